-- One row per staged item: attributes and history aggregates as of the end of
-- the data (one second after the last staged event), for serving. Column names
-- match fct_impression_features so a scorer assembles the same features.
with

impressions as (

    select * from {{ ref('stg_interactions') }}

),

items as (

    select * from {{ ref('stg_items') }}

),

as_of as (

    select * from {{ ref('int_serving_as_of') }}

),

item_totals as (

    select
        impressions.item_id,
        count(*) as item_prior_impressions,
        sum(impressions.clicked) as item_prior_clicks,
        sum(
            case
                when impressions.event_ts >= as_of.as_of_ts - {{ var('item_popularity_window_s') }}
                    then 1
                else 0
            end
        ) as item_recent_impressions
    from impressions
    cross join as_of
    group by impressions.item_id

),

final as (

    select
        items.item_id,
        as_of.as_of_ts,
        items.category,
        items.price_band,
        items.brand,
        cast(as_of.as_of_ts - items.created_ts as double) / 86400.0 as item_age_days,
        coalesce(item_totals.item_prior_impressions, 0) as item_prior_impressions,
        coalesce(item_totals.item_prior_clicks, 0) as item_prior_clicks,
        {{ smoothed_ctr('coalesce(item_totals.item_prior_clicks, 0)',
                        'coalesce(item_totals.item_prior_impressions, 0)',
                        'as_of.ctr_prior') }} as item_ctr,
        coalesce(item_totals.item_recent_impressions, 0) as item_recent_impressions
    from items
    cross join as_of
    left join item_totals on items.item_id = item_totals.item_id

)

select * from final
