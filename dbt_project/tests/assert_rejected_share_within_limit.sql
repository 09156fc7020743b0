-- Fails the build when more than var('max_rejected_share') of raw interactions
-- is rejected: that much bad data means the load, not a few rows, is wrong.
with

counts as (

    select
        (select count(*) from {{ source('raw', 'interactions') }}) as n_raw,
        (select count(*) from {{ ref('rejected_interactions') }}) as n_rejected

)

select
    n_raw,
    n_rejected,
    cast(n_rejected as double) / nullif(n_raw, 0) as rejected_share
from counts
where cast(n_rejected as double) / nullif(n_raw, 0) > {{ var('max_rejected_share') }}
