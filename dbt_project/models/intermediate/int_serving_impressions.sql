-- Staged impressions before the serving moment (int_serving_as_of): the
-- history every serving mart aggregates, with each impression's expected click
-- rate (int_impression_exposure), which only depends on events before it.
-- Ephemeral: inlined into the marts.
{{ config(materialized='ephemeral') }}

with

as_of as (

    select * from {{ ref('int_serving_as_of') }}

),

impressions as (

    select impressions.*
    from {{ ref('int_impression_exposure') }} as impressions
    inner join as_of on impressions.event_ts < as_of.as_of_ts

)

select * from impressions
