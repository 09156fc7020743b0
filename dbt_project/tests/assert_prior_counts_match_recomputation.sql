-- Recomputes prior counts independently (a join on strictly earlier events and
-- a group by, no window functions) on a deterministic sample that includes
-- impressions sharing their second with another of their user or item (up to
-- 100 of each kind), and compares the result with the mart. In a `dbt build`
-- that appended to the mart (an incremental build), the sample is drawn from the
-- appended rows (every 499th and up to 25 ties of each kind): earlier rows were
-- checked when they were built, and the newest rows have the longest histories.
{%- set after = appended_after_ts(ref('fct_impression_features')) %}
{%- set sample_every = 4999 if after is none else 499 %}
{%- set ties_per_kind = 100 if after is none else 25 %}
with

features as (

    -- only the columns compared: SQLite copies what a CTE selects
    select
        interaction_id,
        user_id,
        item_id,
        event_ts,
        user_prior_impressions,
        user_prior_clicks,
        item_prior_impressions,
        item_prior_clicks
    from {{ ref('fct_impression_features') }}
    {%- if after is not none %}
    where event_ts > {{ after }}
    {%- endif %}

),

impressions as (

    select
        interaction_id,
        user_id,
        item_id,
        event_ts,
        clicked
    from {{ ref('int_interactions') }}

),

user_seconds_shared as (

    -- (user, second) pairs with more than one impression: the rule's edge case
    select
        user_id,
        event_ts
    from impressions
    {%- if after is not none %}
    where event_ts > {{ after }}
    {%- endif %}
    group by user_id, event_ts
    having count(*) > 1

),

item_seconds_shared as (

    select
        item_id,
        event_ts
    from impressions
    {%- if after is not none %}
    where event_ts > {{ after }}
    {%- endif %}
    group by item_id, event_ts
    having count(*) > 1

),

tied as (

    select
        features.interaction_id,
        case when user_seconds_shared.user_id is null then 0 else 1 end as user_tie,
        case when item_seconds_shared.item_id is null then 0 else 1 end as item_tie
    from features
    left join user_seconds_shared
        on
            features.user_id = user_seconds_shared.user_id
            and features.event_ts = user_seconds_shared.event_ts
    left join item_seconds_shared
        on
            features.item_id = item_seconds_shared.item_id
            and features.event_ts = item_seconds_shared.event_ts

),

sampled_ties as (

    -- up to ties_per_kind rows of each kind of tie (user, item, both), in a scrambled
    -- but fixed order: every world with ties is checked on them, and a world
    -- made of slates (every row tied) stays as cheap as one without
    select interaction_id
    from (
        select
            interaction_id,
            row_number() over (
                partition by user_tie, item_tie
                order by (interaction_id * 7919) % 10007, interaction_id
            ) as tie_rank
        from tied
        where user_tie = 1 or item_tie = 1
    ) as ranked
    where tie_rank <= {{ ties_per_kind }}

),

sample as (

    select features.*
    from features
    where
        features.interaction_id % {{ sample_every }} = 1
        or features.interaction_id in (select sampled_ties.interaction_id from sampled_ties)

),

sample_user_events as (

    -- only the events of sampled users and items: keeps the joins below small
    select impressions.*
    from impressions
    where impressions.user_id in (select sample.user_id from sample)

),

sample_item_events as (

    select impressions.*
    from impressions
    where impressions.item_id in (select sample.item_id from sample)

),

user_recomputed as (

    select
        sample.interaction_id,
        count(earlier.interaction_id) as user_prior_impressions,
        coalesce(sum(earlier.clicked), 0) as user_prior_clicks
    from sample
    left join sample_user_events as earlier
        on sample.user_id = earlier.user_id and sample.event_ts > earlier.event_ts
    group by sample.interaction_id

),

item_recomputed as (

    select
        sample.interaction_id,
        count(earlier.interaction_id) as item_prior_impressions,
        coalesce(sum(earlier.clicked), 0) as item_prior_clicks
    from sample
    left join sample_item_events as earlier
        on sample.item_id = earlier.item_id and sample.event_ts > earlier.event_ts
    group by sample.interaction_id

),

mismatches as (

    select
        sample.interaction_id,
        sample.user_prior_impressions,
        user_recomputed.user_prior_impressions as expected_user_prior_impressions,
        sample.user_prior_clicks,
        user_recomputed.user_prior_clicks as expected_user_prior_clicks,
        sample.item_prior_impressions,
        item_recomputed.item_prior_impressions as expected_item_prior_impressions,
        sample.item_prior_clicks,
        item_recomputed.item_prior_clicks as expected_item_prior_clicks
    from sample
    inner join user_recomputed on sample.interaction_id = user_recomputed.interaction_id
    inner join item_recomputed on sample.interaction_id = item_recomputed.interaction_id
    where
        sample.user_prior_impressions != user_recomputed.user_prior_impressions
        or sample.user_prior_clicks != user_recomputed.user_prior_clicks
        or sample.item_prior_impressions != item_recomputed.item_prior_impressions
        or sample.item_prior_clicks != item_recomputed.item_prior_clicks

)

select * from mismatches
