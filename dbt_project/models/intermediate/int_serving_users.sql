-- Staged users known at the serving moment (int_serving_as_of): signed up
-- before it, or with no known sign-up time. Ephemeral: inlined into the marts.
{{ config(materialized='ephemeral') }}

with

as_of as (

    select * from {{ ref('int_serving_as_of') }}

),

users as (

    select users.*
    from {{ ref('stg_users') }} as users
    inner join as_of on coalesce(users.signup_ts, 0) < as_of.as_of_ts

)

select * from users
