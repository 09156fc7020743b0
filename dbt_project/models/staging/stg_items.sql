with

source as (

    select * from {{ source('raw', 'items') }}

),

parsed as (

    select
        {{ parse_bigint('item_id') }} as item_id,
        cast(category as {{ dbt.type_string() }}) as category,
        cast(price_band as {{ dbt.type_string() }}) as price_band,
        cast(brand as {{ dbt.type_string() }}) as brand,
        {{ parse_bigint('created_ts') }} as created_ts
    from source

)

select * from parsed
where item_id is not null and item_id >= 0
