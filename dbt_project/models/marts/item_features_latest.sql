-- One row per item known at the serving moment (int_serving_as_of: the end of
-- the data unless var serving_as_of_ts is set): attributes and history
-- aggregates over the events before it. Column names match
-- fct_impression_features so a scorer assembles the same features;
-- item_recent_clicks is for the popularity ranking, not a model feature.
{{ config(alias=serving_alias('item_features_latest')) }}

with

as_of as (

    select * from {{ ref('int_serving_as_of') }}

),

impressions as (

    select * from {{ ref('int_serving_impressions') }}

),

items as (

    select items.*
    from {{ ref('stg_items') }} as items
    inner join as_of on coalesce(items.created_ts, 0) < as_of.as_of_ts

),

impressions_with_window as (

    -- 1 for an impression within the trailing popularity window, else 0
    select
        impressions.item_id,
        impressions.clicked,
        case
            when impressions.event_ts >= as_of.as_of_ts - {{ var('item_popularity_window_s') }}
                then 1
            else 0
        end as in_popularity_window
    from impressions
    cross join as_of

),

item_totals as (

    select
        item_id,
        cast(sum(clicked) as bigint) as item_prior_clicks,
        cast(sum(in_popularity_window) as bigint) as item_recent_impressions,
        cast(sum(in_popularity_window * clicked) as bigint) as item_recent_clicks,
        count(*) as item_prior_impressions
    from impressions_with_window
    group by item_id

),

final as (

    select
        items.item_id,
        as_of.as_of_ts,
        items.category
        {{- attribute_columns('item', 'items') }},
        cast(as_of.as_of_ts - items.created_ts as double) / 86400.0 as item_age_days,
        coalesce(item_totals.item_prior_impressions, 0) as item_prior_impressions,
        coalesce(item_totals.item_prior_clicks, 0) as item_prior_clicks,
        {{ smoothed_ctr('coalesce(item_totals.item_prior_clicks, 0)',
                        'coalesce(item_totals.item_prior_impressions, 0)',
                        'as_of.ctr_prior') }} as item_ctr,
        coalesce(item_totals.item_recent_impressions, 0) as item_recent_impressions,
        coalesce(item_totals.item_recent_clicks, 0) as item_recent_clicks
    from items
    cross join as_of
    left join item_totals on items.item_id = item_totals.item_id

)

select * from final
