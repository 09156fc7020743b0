-- One row per user known at the serving moment (int_serving_as_of: the end of
-- the data unless var serving_as_of_ts is set): profile and history aggregates
-- over the events before it. Column names match fct_impression_features so a
-- scorer assembles the same features.
{{ config(alias=serving_alias('user_features_latest')) }}

with

as_of as (

    select * from {{ ref('int_serving_as_of') }}

),

impressions as (

    select * from {{ ref('int_serving_impressions') }}

),

users as (

    select * from {{ ref('int_serving_users') }}

),

user_totals as (

    select
        user_id,
        count(*) as user_prior_impressions,
        cast(sum(clicked) as bigint) as user_prior_clicks,
        sum(item_ctr) as user_prior_expected_clicks,
        max(event_ts) as user_last_impression_ts,
        max(case when clicked = 1 then event_ts end) as user_last_click_ts
        {{- category_slot_sums() }}
    from impressions
    group by user_id

),

final as (

    select
        users.user_id,
        as_of.as_of_ts
        {{- attribute_columns('user', 'users') }},
        cast(as_of.as_of_ts - users.signup_ts as double) / 86400.0 as user_tenure_days,
        coalesce(user_totals.user_prior_impressions, 0) as user_prior_impressions,
        coalesce(user_totals.user_prior_clicks, 0) as user_prior_clicks,
        {{ smoothed_ctr('coalesce(user_totals.user_prior_clicks, 0)',
                        'coalesce(user_totals.user_prior_impressions, 0)',
                        'as_of.ctr_prior') }} as user_ctr,
        coalesce(user_totals.user_prior_expected_clicks, 0) as user_prior_expected_clicks,
        {{ coec('coalesce(user_totals.user_prior_clicks, 0)',
                'coalesce(user_totals.user_prior_expected_clicks, 0)') }} as user_coec,
        {{ seconds_since('as_of.as_of_ts', 'user_totals.user_last_impression_ts') }}
            as user_seconds_since_last_impression,
        {{ seconds_since('as_of.as_of_ts', 'user_totals.user_last_click_ts') }}
            as user_seconds_since_last_click
        {{- category_slot_coecs('user_totals') }}
    from users
    cross join as_of
    left join user_totals on users.user_id = user_totals.user_id

)

select * from final
