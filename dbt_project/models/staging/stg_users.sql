with

source as (

    select * from {{ source('raw', 'users') }}

),

parsed as (

    select
        {{ parse_bigint('user_id') }} as user_id,
        {{ parse_bigint('signup_ts') }} as signup_ts
        {{- parsed_attribute_columns('user') }}
    from source

)

select * from parsed
where user_id is not null and user_id >= 0
