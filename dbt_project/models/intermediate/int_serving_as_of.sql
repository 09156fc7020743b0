-- One row: the moment the serving marts describe (one second after the last
-- staged event, so every event counts as history) and the prior of their
-- smoothed CTRs (the click rate over all staged events, shrunk toward
-- var('ctr_prior')).
with

impressions as (

    select * from {{ ref('stg_interactions') }}

),

as_of as (

    select
        max(event_ts) + 1 as as_of_ts,
        {{ smoothed_ctr('sum(clicked)', 'count(*)', var('ctr_prior')) }} as ctr_prior
    from impressions

)

select * from as_of
