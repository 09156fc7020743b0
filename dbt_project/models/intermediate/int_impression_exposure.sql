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
--
-- Incremental (incremental_features.sql): a nightly build sums over the new
-- rows alone (all after the last built second) and adds the carried totals of
-- each new row's user and user x category over earlier history.
{{ config(
    materialized=feature_materialization(),
    upstream_feature_model='int_impression_history',
) }}
{%- set plan = feature_build_plan() %}
{{ feature_build_header(plan) }}
{%- set carried = plan['incremental'] %}

with

history as (

    select * from {{ ref('int_impression_history') }}
    {%- if carried %}
    where event_ts > {{ plan['cutoff_ts'] }}
    {%- endif %}

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

{%- if carried %}

carried_users as (

    select
        user_id as carried_user_id,
        sum(item_ctr) as carried_expected_clicks
        {{- category_slot_sums() }}
    from {{ this }}
    where user_id in (select user_id from history)
    group by user_id

),

carried_user_categories as (

    select
        user_id as carried_user_id,
        category as carried_category,
        sum(item_ctr) as carried_expected_clicks
    from {{ this }}
    where user_id in (select user_id from history)
    group by user_id, category

),
{%- endif %}

exposure as (

    select
        history_with_item_ctr.*,
        coalesce(sum(history_with_item_ctr.item_ctr) over user_prior, 0.0)
        {%- if carried %} + coalesce(carried_users.carried_expected_clicks, 0.0){% endif %}
            as user_prior_expected_clicks,
        coalesce(sum(history_with_item_ctr.item_ctr) over user_category_prior, 0.0)
        {%- if carried %} + coalesce(carried_user_categories.carried_expected_clicks, 0.0){% endif %}
            as user_category_prior_expected_clicks
        {{- category_slot_sums('user_prior', 'carried_users' if carried else '') }}
    from history_with_item_ctr
    {%- if carried %}
    left join carried_users
        on history_with_item_ctr.user_id = carried_users.carried_user_id
    left join carried_user_categories
        on history_with_item_ctr.user_id = carried_user_categories.carried_user_id
        and history_with_item_ctr.category
            is not distinct from carried_user_categories.carried_category
    {%- endif %}
    window
        user_prior as (
            partition by history_with_item_ctr.user_id
            order by history_with_item_ctr.event_ts
            range between unbounded preceding and 1 preceding
        ),
        user_category_prior as (
            partition by history_with_item_ctr.user_id, history_with_item_ctr.category
            order by history_with_item_ctr.event_ts
            range between unbounded preceding and 1 preceding
        )

)

select * from exposure
