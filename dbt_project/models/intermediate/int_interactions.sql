-- One row per clean impression (int_interactions_checked without a reason):
-- the interactions every history and feature is computed from.
-- Incremental: a nightly build appends the clean rows after its last second.
{{ config(
    materialized=feature_materialization(),
    upstream_feature_model='int_interactions_checked',
) }}
{%- set plan = feature_build_plan() %}
{{ feature_build_header(plan) }}

with

checked as (

    select * from {{ ref('int_interactions_checked') }}
    {%- if plan['incremental'] %}
    where event_ts > {{ plan['cutoff_ts'] }}
    {%- endif %}

),

clean as (

    select
        interaction_id,
        user_id,
        item_id,
        event_ts,
        clicked
        {{- attribute_columns('context') }}
    from checked
    where reason is null

)

select * from clean
