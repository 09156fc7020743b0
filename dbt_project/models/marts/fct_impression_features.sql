-- One row per staged impression: ids, time, label, and every feature the model
-- reads, all computed from events strictly before the impression. The YAML
-- beside this file is the feature registry: each column's meta says its role,
-- type and group, and the Python package reads it from the dbt manifest. The
-- data set's attribute columns (vars.datasets in dbt_project.yml) are
-- registered through this model's meta instead, set here at parse time, and so
-- are the per-category history slots (their count is a var).
-- Incremental (incremental_features.sql): a nightly build appends the rows
-- after its last built second.
{{ config(
    meta={'attributes': feature_attributes()},
    materialized=feature_materialization(),
    upstream_feature_model='int_impression_exposure',
) }}
{%- set plan = feature_build_plan() %}
{{ feature_build_header(plan) }}

with

history as (

    select * from {{ ref('int_impression_exposure') }}
    {%- if plan['incremental'] %}
    where event_ts > {{ plan['cutoff_ts'] }}
    {%- endif %}

),

users as (

    select * from {{ ref('stg_users') }}

),

items as (

    select * from {{ ref('stg_items') }}

),

features as (

    select
        impressions.interaction_id,
        impressions.user_id,
        impressions.item_id,
        impressions.event_ts,
        impressions.clicked

        {{- attribute_columns('context', 'impressions') }}
        {{- attribute_columns('user', 'users') }}
        {{- attribute_columns('item', 'items') }},

        cast(impressions.event_ts - users.signup_ts as double) / 86400.0 as user_tenure_days,

        items.category,
        cast(impressions.event_ts - items.created_ts as double) / 86400.0 as item_age_days,

        impressions.user_prior_impressions,
        impressions.user_prior_clicks,
        {{ smoothed_ctr('impressions.user_prior_clicks',
                        'impressions.user_prior_impressions',
                        'impressions.ctr_prior') }} as user_ctr,
        impressions.user_prior_expected_clicks,
        {{ coec('impressions.user_prior_clicks', 'impressions.user_prior_expected_clicks') }}
            as user_coec,
        {{ seconds_since('impressions.event_ts', 'impressions.user_last_impression_ts') }}
            as user_seconds_since_last_impression,
        {{ seconds_since('impressions.event_ts', 'impressions.user_last_click_ts') }}
            as user_seconds_since_last_click,

        impressions.item_prior_impressions,
        impressions.item_prior_clicks,
        impressions.item_ctr,
        impressions.item_recent_impressions,

        impressions.user_category_prior_impressions,
        impressions.user_category_prior_clicks,
        {{ smoothed_ctr('impressions.user_category_prior_clicks',
                        'impressions.user_category_prior_impressions',
                        'impressions.ctr_prior') }} as user_category_ctr,
        impressions.user_category_prior_expected_clicks,
        {{ coec('impressions.user_category_prior_clicks',
                'impressions.user_category_prior_expected_clicks') }} as user_category_coec
        {{- category_slot_coecs('impressions') }}

    from history as impressions
    inner join users on impressions.user_id = users.user_id
    inner join items on impressions.item_id = items.item_id

)

select * from features
{%- if target.type == 'duckdb' %}
-- DuckDB stores rows in insertion order: in id order, models_py reads the table
-- without sorting it (1M rows: +0.4 s here, -1 s there). SQLite's sort would
-- cost 4 s, and its reader joins parts it reads in parallel anyway.
order by interaction_id
{%- endif %}
