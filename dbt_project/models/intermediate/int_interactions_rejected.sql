-- Raw interactions that int_interactions_checked refused, exactly as they came (as text), with
-- the reason. Nothing is dropped silently: raw = int_interactions + this.
with

checked as (

    select * from {{ ref('int_interactions_checked') }}

),

rejected as (

    select
        raw_interaction_id as interaction_id,
        raw_user_id as user_id,
        raw_item_id as item_id,
        raw_event_ts as event_ts,
        raw_clicked as clicked,
        reason
    from checked
    where reason is not null

)

select * from rejected
