-- One row per staged impression: its histories (int_impression_history), the
-- click rate expected of it from its item alone (the item's smoothed CTR over
-- strictly earlier events), and how many clicks the user was expected to make
-- over the user's own strictly earlier impressions, overall, on this item's
-- category, and on each category slot (category_history_slots) with the clicks
-- there. Clicks over expected clicks (COEC) corrects a user's history for
-- what the user was shown: a user shown popular items clicks more without
-- liking them more.
--
-- Each expected rate uses only events before its own impression, and the sums
-- use range frames ending 1 s before this one, so no same-second event counts.
with

history as (

    select * from {{ ref('int_impression_history') }}

),

history_with_prior as (

    -- The prior of every smoothed CTR: the global click rate over strictly
    -- earlier events, shrunk toward var('ctr_prior').
    select
        history.*,
        {{ smoothed_ctr('global_prior_clicks', 'global_prior_impressions', var('ctr_prior')) }}
            as ctr_prior
    from history

),

history_with_item_ctr as (

    select
        *,
        {{ smoothed_ctr('item_prior_clicks', 'item_prior_impressions', 'ctr_prior') }}
            as item_ctr
    from history_with_prior

),

exposure as (

    select
        *,
        coalesce(sum(item_ctr) over user_prior, 0.0) as user_prior_expected_clicks,
        coalesce(sum(item_ctr) over user_category_prior, 0.0)
            as user_category_prior_expected_clicks
        {{- category_slot_sums('user_prior') }}
    from history_with_item_ctr
    window
        user_prior as (
            partition by user_id
            order by event_ts
            range between unbounded preceding and 1 preceding
        ),
        user_category_prior as (
            partition by user_id, category
            order by event_ts
            range between unbounded preceding and 1 preceding
        )

)

select * from exposure
