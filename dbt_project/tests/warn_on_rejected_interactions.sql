{{ config(severity='warn') }}
-- Warns (never fails) when any raw interaction was rejected, with the count per
-- reason; see rejected_interactions for the rows themselves.
select
    reason,
    count(*) as n_rejected
from {{ ref('rejected_interactions') }}
group by reason
