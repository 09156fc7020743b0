-- One row per (user, item) the user clicked before the serving moment
-- (int_serving_as_of): serving leaves these items out of the user's lists.
{{ config(alias=serving_alias('user_clicked_items')) }}

with

impressions as (

    select * from {{ ref('int_serving_impressions') }}

),

clicks as (

    select distinct
        user_id,
        item_id
    from impressions
    where clicked = 1

)

select * from clicks
