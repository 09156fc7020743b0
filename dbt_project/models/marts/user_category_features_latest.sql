-- One row per (user, category) the user has seen: the user's history on that
-- category as of the end of the data, for serving. Pairs absent here have no
-- history (0 impressions, prior CTR).
with

impressions as (

    select * from {{ ref('stg_interactions') }}

),

items as (

    select
        item_id,
        category
    from {{ ref('stg_items') }}

),

as_of as (

    select {{ smoothed_ctr('sum(clicked)', 'count(*)', var('ctr_prior')) }} as ctr_prior
    from impressions

),

user_category_totals as (

    select
        impressions.user_id,
        items.category,
        count(*) as user_category_prior_impressions,
        sum(impressions.clicked) as user_category_prior_clicks
    from impressions
    inner join items on impressions.item_id = items.item_id
    group by impressions.user_id, items.category

),

final as (

    select
        user_category_totals.user_id,
        user_category_totals.category,
        user_category_totals.user_category_prior_impressions,
        user_category_totals.user_category_prior_clicks,
        {{ smoothed_ctr('user_category_totals.user_category_prior_clicks',
                        'user_category_totals.user_category_prior_impressions',
                        'as_of.ctr_prior') }} as user_category_ctr
    from user_category_totals
    cross join as_of

)

select * from final
