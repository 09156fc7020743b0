{#- In-project generic tests (dbt Hub, and so dbt_utils, is unreachable). Each
    selects the failing rows. NULL never passes silently: coalesce(..., false). -#}

{% test expression_is_true(model, expression, column_name=None) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% endtest %}

{% test accepted_range(model, column_name, min_value=None, max_value=None, inclusive=true) %}
select *
from {{ model }}
where
    {{ column_name }} is not null
    and (
        1 = 0
        {%- if min_value is not none %}
        or {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}
        {%- endif %}
        {%- if max_value is not none %}
        or {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}
        {%- endif %}
    )
{% endtest %}

{% test unique_combination_of_columns(model, combination_of_columns) %}
select
    {{ combination_of_columns | join(', ') }},
    count(*) as n_rows
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Fails when more than max_share of the model's rows have a non-NULL
    column_name (a rejection reason). Attached to the model every staged row
    comes from, so a failure stops everything downstream of it in `dbt build`. -#}
{% test share_of_non_null_at_most(model, column_name, max_share) %}
with

counts as (

    select
        count(*) as n_rows,
        count({{ column_name }}) as n_non_null
    from {{ model }}

)

select
    n_rows,
    n_non_null,
    cast(n_non_null as double) / n_rows as non_null_share
from counts
where n_rows > 0 and cast(n_non_null as double) / n_rows > {{ max_share }}
{% endtest %}

{#- Fails on epoch-second times that cannot be right: later than the run's start
    plus var('max_future_skew_s') (a time in milliseconds lands far in the
    future), or earlier than var('min_plausible_ts'). -#}
{% test plausible_epoch_seconds(model, column_name) %}
select {{ column_name }}
from {{ model }}
where
    {{ column_name }} > {{ max_event_ts() }}
    or {{ column_name }} < {{ var('min_plausible_ts') }}
{% endtest %}

{#- Every listed column's NULLs and range in one scan of the model, where a test
    per column and check scans it once each (on the 1M-row feature mart, 35
    scans took 10.7 s of SQLite's build). `columns` maps a column to its bounds:
    {min: 0}, {min: 0, max: 1}, {} for NULL only; {nullable: true} allows NULL.
    One row per failed check, naming it, with its count of failing rows (`dbt
    test --store-failures` keeps them). -#}
{% test columns_in_range(model, columns) %}
{%- set checks = [] %}
{%- for name, bounds in columns.items() %}
    {%- set failing = [] %}
    {%- if not bounds.get('nullable', false) %}
        {%- do failing.append(name ~ ' is null') %}
    {%- endif %}
    {%- if bounds.get('min') is not none %}
        {%- do failing.append(name ~ ' < ' ~ bounds['min']) %}
    {%- endif %}
    {%- if bounds.get('max') is not none %}
        {%- do failing.append(name ~ ' > ' ~ bounds['max']) %}
    {%- endif %}
    {%- if not failing %}
        {{ exceptions.raise_compiler_error(
            "columns_in_range: column " ~ name ~ " is nullable and has no bounds: nothing to check") }}
    {%- endif %}
    {%- do checks.append(failing | join(' or ')) %}
{%- endfor %}
with

failing_counts as (

    select
    {%- for check in checks %}
        coalesce(sum(case when {{ check }} then 1 else 0 end), 0) as failing_{{ loop.index }}
        {{- ',' if not loop.last }}
    {%- endfor %}
    from {{ model }}

),

checks as (

    {%- for check in checks %}
    select {{ loop.index }} as check_number, '{{ check }}' as failed_check
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}

),

failed as (

    select
        checks.failed_check,
        case checks.check_number
        {%- for check in checks %}
            when {{ loop.index }} then failing_counts.failing_{{ loop.index }}
        {%- endfor %}
        end as failing_rows
    from checks
    cross join failing_counts

)

select *
from failed
where failing_rows > 0
{% endtest %}
