-- One row: the moment the serving marts describe and the prior of their
-- smoothed CTRs (the click rate over the events before that moment, shrunk
-- toward var('ctr_prior')). The moment is var('serving_as_of_ts') when set
-- (`recsys rank` sets it to the test split's start), else one second after the
-- last staged event, so every event counts as history.
{{ config(alias=serving_alias('int_serving_as_of')) }}

with

impressions as (

    select * from {{ ref('int_interactions') }}

),

moment as (

    {% if var('serving_as_of_ts') is none %}
        select max(event_ts) + 1 as as_of_ts from impressions
    {% else %}
        select cast({{ var('serving_as_of_ts') | int }} as bigint) as as_of_ts
    {% endif %}

),

history as (

    select impressions.clicked
    from impressions
    inner join moment on impressions.event_ts < moment.as_of_ts

),

as_of as (

    select
        (select moment.as_of_ts from moment) as as_of_ts,
        {{ smoothed_ctr('coalesce(sum(clicked), 0)', 'count(*)', var('ctr_prior')) }} as ctr_prior
    from history

)

select * from as_of
