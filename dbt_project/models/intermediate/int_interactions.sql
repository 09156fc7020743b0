-- One row per clean impression (int_interactions_checked without a reason):
-- the interactions every history and feature is computed from.
with

checked as (

    select * from {{ ref('int_interactions_checked') }}

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
