with

checked as (

    select * from {{ ref('stg_interactions_checked') }}

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
