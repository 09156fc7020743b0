with

source as (

    select * from {{ source('raw', 'users') }}

),

parsed as (

    select
        {{ parse_bigint('user_id') }} as user_id,
        {{ parse_bigint('signup_ts') }} as signup_ts,
        cast(age_band as {{ dbt.type_string() }}) as age_band,
        cast(region as {{ dbt.type_string() }}) as region,
        cast(account_tier as {{ dbt.type_string() }}) as account_tier,
        cast(device as {{ dbt.type_string() }}) as device
    from source

)

select * from parsed
where user_id is not null and user_id >= 0
