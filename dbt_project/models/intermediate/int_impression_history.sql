-- One row per staged impression, carrying the impression itself and its
-- point-in-time histories: the user's, the item's, the user's on the item's
-- category, and the global click count, each over events strictly before it.
--
-- Every frame is a range over integer epoch seconds that ends 1 s before the
-- event: neither the impression itself nor other events in the same second are
-- counted. A rows frame would count same-second events that happen to sort
-- earlier, which leaks their labels. All windows sit in one select so the mart
-- needs no join on interaction_id (SQLite pays dearly for 1M-row joins).
--
-- The global counts have no partition: a range frame ending 1 s before runs on
-- one thread and took DuckDB 14 s of 15 at 1M rows. Events up to and including
-- the second (the frame every engine streams cheaply) less the second's own
-- events give the same counts: DuckDB 15 s -> 6 s, SQLite about 1 s slower.
--
-- Click counts are cast to bigint: DuckDB's sum of integers is a 128-bit
-- HUGEINT, which it stores bit-packed and scans about 100x slower than a
-- BIGINT (0.5 s a column at 1M rows, most of a cold read of the mart).
--
-- Incremental (incremental_features.sql): a nightly build computes these
-- windows over the new rows alone (all after the last built second) and adds
-- the carried totals of earlier history per user, item, user x category and
-- overall; the trailing popularity window counts the earlier impressions of its
-- range directly. Every earlier event is before every new one, so the sums are
-- exactly a full build's.
{{ config(
    materialized=feature_materialization(),
    upstream_feature_model='int_interactions',
    inputs_fingerprint='category slots',
) }}
{%- set plan = feature_build_plan() %}
{{ feature_build_header(plan) }}

with

impressions as (

    select * from {{ ref('int_interactions') }}
    {%- if plan['incremental'] %}
    where event_ts > {{ plan['cutoff_ts'] }}
    {%- endif %}

),

items as (

    select
        stg_items.item_id,
        stg_items.category,
        slots.slot as category_slot
    from {{ ref('stg_items') }} as stg_items
    left join {{ ref('category_history_slots') }} as slots
        on stg_items.category = slots.category

),

impressions_with_category as (

    select
        impressions.interaction_id,
        impressions.user_id,
        impressions.item_id,
        impressions.event_ts,
        impressions.clicked,
        items.category,
        items.category_slot
        {{- attribute_columns('context', 'impressions') }}
    from impressions
    inner join items on impressions.item_id = items.item_id

),

windows as (

    select
        interaction_id,
        user_id,
        item_id,
        event_ts,
        clicked,
        category,
        category_slot
        {{- attribute_columns('context') }},

        count(*) over user_prior as user_prior_impressions,
        cast(coalesce(sum(clicked) over user_prior, 0) as bigint) as user_prior_clicks,
        max(event_ts) over user_prior as user_last_impression_ts,
        max(case when clicked = 1 then event_ts end) over user_prior as user_last_click_ts,

        count(*) over item_prior as item_prior_impressions,
        cast(coalesce(sum(clicked) over item_prior, 0) as bigint) as item_prior_clicks,
        count(*) over item_recent as item_recent_impressions,

        count(*) over user_category_prior as user_category_prior_impressions,
        cast(coalesce(sum(clicked) over user_category_prior, 0) as bigint)
            as user_category_prior_clicks,

        -- events up to and including this second, less those in this second
        count(*) over global_through_second - count(*) over global_same_second
            as global_prior_impressions,
        cast(
            sum(clicked) over global_through_second - sum(clicked) over global_same_second
            as bigint
        ) as global_prior_clicks

    from impressions_with_category
    window
        user_prior as (
            partition by user_id
            order by event_ts
            range between unbounded preceding and 1 preceding
        ),
        item_prior as (
            partition by item_id
            order by event_ts
            range between unbounded preceding and 1 preceding
        ),
        item_recent as (
            partition by item_id
            order by event_ts
            range between {{ var('item_popularity_window_s') }} preceding and 1 preceding
        ),
        user_category_prior as (
            partition by user_id, category
            order by event_ts
            range between unbounded preceding and 1 preceding
        ),
        global_through_second as (
            order by event_ts
            range between unbounded preceding and current row
        ),
        global_same_second as (
            partition by event_ts
        )

)
{%- if plan['incremental'] %},

built as (

    select * from {{ this }}

),

carried_users as (

    select
        user_id,
        count(*) as impressions,
        cast(sum(clicked) as bigint) as clicks,
        max(event_ts) as last_impression_ts,
        max(case when clicked = 1 then event_ts end) as last_click_ts
    from built
    where user_id in (select user_id from impressions)
    group by user_id

),

carried_items as (

    select item_id, count(*) as impressions, cast(sum(clicked) as bigint) as clicks
    from built
    where item_id in (select item_id from impressions)
    group by item_id

),

carried_user_categories as (

    select user_id, category, count(*) as impressions, cast(sum(clicked) as bigint) as clicks
    from built
    where user_id in (select user_id from impressions)
    group by user_id, category

),

carried_global as (

    select count(*) as impressions, cast(sum(clicked) as bigint) as clicks from built

),

recent_events as (

    -- the new rows and the earlier impressions of their items that a new row's
    -- trailing popularity window can reach
    select interaction_id, item_id, event_ts from impressions
    union all
    select cast(null as bigint), item_id, event_ts
    from built
    where event_ts >= {{ plan['cutoff_ts'] + 1 - var('item_popularity_window_s') | int }}
        and item_id in (select item_id from impressions)

),

recent as (

    select
        interaction_id,
        count(*) over (
            partition by item_id
            order by event_ts
            range between {{ var('item_popularity_window_s') }} preceding and 1 preceding
        ) as item_recent_impressions
    from recent_events

),

history as (

    select
        windows.interaction_id,
        windows.user_id,
        windows.item_id,
        windows.event_ts,
        windows.clicked,
        windows.category,
        windows.category_slot
        {{- attribute_columns('context', 'windows') }},

        windows.user_prior_impressions + coalesce(carried_users.impressions, 0)
            as user_prior_impressions,
        windows.user_prior_clicks + coalesce(carried_users.clicks, 0) as user_prior_clicks,
        coalesce(windows.user_last_impression_ts, carried_users.last_impression_ts)
            as user_last_impression_ts,
        coalesce(windows.user_last_click_ts, carried_users.last_click_ts) as user_last_click_ts,

        windows.item_prior_impressions + coalesce(carried_items.impressions, 0)
            as item_prior_impressions,
        windows.item_prior_clicks + coalesce(carried_items.clicks, 0) as item_prior_clicks,
        recent.item_recent_impressions,

        windows.user_category_prior_impressions + coalesce(carried_user_categories.impressions, 0)
            as user_category_prior_impressions,
        windows.user_category_prior_clicks + coalesce(carried_user_categories.clicks, 0)
            as user_category_prior_clicks,

        windows.global_prior_impressions + carried_global.impressions
            as global_prior_impressions,
        windows.global_prior_clicks + coalesce(carried_global.clicks, 0) as global_prior_clicks

    from windows
    inner join recent on windows.interaction_id = recent.interaction_id
    left join carried_users on windows.user_id = carried_users.user_id
    left join carried_items on windows.item_id = carried_items.item_id
    left join carried_user_categories
        on windows.user_id = carried_user_categories.user_id
        and windows.category is not distinct from carried_user_categories.category
    cross join carried_global

)
{%- endif %}

select * from {{ 'history' if plan['incremental'] else 'windows' }}
