-- One row per (user, category) known at the serving moment: the user's history
-- on that category over the events before it. Dense over users x categories,
-- so every candidate item finds its row; pairs with no history get 0 and the
-- prior.
{{ config(alias=serving_alias('user_category_features_latest')) }}

with

as_of as (

    select * from {{ ref('int_serving_as_of') }}

),

impressions as (

    select * from {{ ref('int_serving_impressions') }}

),

users as (

    select user_id from {{ ref('int_serving_users') }}

),

items as (

    select
        item_id,
        category
    from {{ ref('stg_items') }}

),

categories as (

    select distinct category from items

),

user_category_totals as (

    select
        impressions.user_id,
        items.category,
        cast(sum(impressions.clicked) as bigint) as user_category_prior_clicks,
        count(*) as user_category_prior_impressions,
        sum(impressions.item_ctr) as user_category_prior_expected_clicks
    from impressions
    inner join items on impressions.item_id = items.item_id
    group by impressions.user_id, items.category

),

final as (

    select
        users.user_id,
        categories.category,
        coalesce(totals.user_category_prior_impressions, 0)
            as user_category_prior_impressions,
        coalesce(totals.user_category_prior_clicks, 0) as user_category_prior_clicks,
        {{ smoothed_ctr('coalesce(totals.user_category_prior_clicks, 0)',
                        'coalesce(totals.user_category_prior_impressions, 0)',
                        'as_of.ctr_prior') }} as user_category_ctr,
        coalesce(totals.user_category_prior_expected_clicks, 0)
            as user_category_prior_expected_clicks,
        {{ coec('coalesce(totals.user_category_prior_clicks, 0)',
                'coalesce(totals.user_category_prior_expected_clicks, 0)') }}
            as user_category_coec
    from users
    cross join categories
    cross join as_of
    left join user_category_totals as totals
        on
            users.user_id = totals.user_id
            and categories.category = totals.category

)

select * from final
