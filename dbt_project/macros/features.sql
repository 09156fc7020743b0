{#- Smoothed click-through rate: (clicks + m * prior) / (impressions + m), so that
    one impression with one click is not a 100% clicker. -#}
{% macro smoothed_ctr(clicks, impressions, prior) %}
    (cast({{ clicks }} as double) + {{ var('ctr_smoothing_m') }} * ({{ prior }}))
    / (cast({{ impressions }} as double) + {{ var('ctr_smoothing_m') }})
{% endmacro %}

{#- Seconds from an earlier epoch to a later one; NULL when there is no earlier one. -#}
{% macro seconds_since(later_ts, earlier_ts) %}
    cast({{ later_ts }} - {{ earlier_ts }} as double)
{% endmacro %}

{#- The latest moment an event may carry: the run's start plus a tolerance. -#}
{% macro max_event_ts() %}
    {{ run_started_at.timestamp() | int + var('max_future_skew_s') | int }}
{% endmacro %}

{#- The build log: one row per successful build of a feature mart, written by
    its post-hook. models_py reads it to tell which build a table is (cache
    key), whether raw data changed after it (staleness), and with which vars the
    features were computed (a run's config.json records them). A log created
    before vars_json existed gets the column added. -#}
{% macro create_feature_build_log() %}
    create table if not exists {{ target.schema }}.feature_builds (
        relation_name {{ dbt.type_string() }},
        invocation_id {{ dbt.type_string() }},
        built_at_ms bigint,
        vars_json {{ dbt.type_string() }}
    )
    {%- if execute %}
        {%- set log = adapter.get_relation(database=target.database, schema=target.schema, identifier='feature_builds') %}
        {%- if log is not none and 'vars_json' not in adapter.get_columns_in_relation(log) | map(attribute='name') | map('lower') | list %}
            {%- do alter_relation_add_remove_columns(log, [api.Column('vars_json', dbt.type_string())], none) %}
        {%- endif %}
    {%- endif %}
{% endmacro %}

{#- The vars that decide feature values, as one JSON object. -#}
{% macro feature_vars_json() %}
    {%- set values = {} -%}
    {%- for name in ['dataset', 'ctr_smoothing_m', 'ctr_prior', 'coec_prior_clicks',
                     'item_popularity_window_s', 'max_rejected_share', 'max_future_skew_s',
                     'min_plausible_ts'] -%}
        {%- do values.update({name: var(name)}) -%}
    {%- endfor -%}
    {{- tojson(values, sort_keys=true) -}}
{% endmacro %}

{% macro record_feature_build() %}
    insert into {{ target.schema }}.feature_builds
        (relation_name, invocation_id, built_at_ms, vars_json)
    values (
        '{{ this.identifier }}',
        '{{ invocation_id }}',
        {{ (run_started_at.timestamp() * 1000) | int }},
        '{{ feature_vars_json() | replace("'", "''") }}'
    )
{% endmacro %}

{#- The verdict log: one row per model, test, unit test, seed or snapshot that a dbt
    command executed, with its status, appended at the end of every command.
    models_py trusts a node's latest verdict, so a command that executes
    nothing (compile, docs generate) or other nodes (`dbt test -s stg_users`)
    cannot hide an earlier failure; target/run_results.json can. Skipped nodes
    are not a verdict and leave the earlier one in place. -#}
{% macro create_node_results_log() %}
    create table if not exists {{ target.schema }}.dbt_node_results (
        unique_id {{ dbt.type_string() }},
        status {{ dbt.type_string() }},
        invocation_id {{ dbt.type_string() }},
        recorded_at_ms bigint
    )
{% endmacro %}

{% macro record_node_results(results) %}
    {%- set judged = [] -%}
    {%- for result in results
            if result.node.resource_type in ('model', 'test', 'unit_test', 'seed', 'snapshot')
            and result.status | string not in ('skipped', 'no-op') -%}
        {%- do judged.append(result) -%}
    {%- endfor -%}
    {%- if execute and judged -%}
        {%- set recorded_at_ms = (modules.datetime.datetime.now(modules.pytz.utc).timestamp() * 1000) | int -%}
        {%- set insert -%}
            insert into {{ target.schema }}.dbt_node_results
                (unique_id, status, invocation_id, recorded_at_ms)
            values
            {%- for result in judged %}
                ('{{ result.node.unique_id }}', '{{ result.status | string }}',
                 '{{ invocation_id }}', {{ recorded_at_ms }}){{ ',' if not loop.last }}
            {%- endfor %}
        {%- endset -%}
        {#- on-run-end hooks run outside a transaction, and dbt-sqlite would never
            commit this insert: open one and commit it. -#}
        {%- call statement('record_node_results', auto_begin=True) -%}{{ insert }}{%- endcall -%}
        {%- do adapter.commit() -%}
    {%- endif -%}
{% endmacro %}

{#- Serving marts built as of an earlier moment (var serving_as_of_ts, set by
    `recsys rank`) go to `<name>__as_of`, so they never replace the tables
    that serving reads. -#}
{% macro serving_alias(name) %}
    {{ return(name if var('serving_as_of_ts') is none else name ~ '__as_of') }}
{% endmacro %}

{#- Clicks over expected clicks (COEC), smoothed toward 1 by var('coec_prior_clicks')
    expected clicks: above 1, the user clicks more than the items shown to the
    user predict; 1 with no history. -#}
{% macro coec(clicks, expected_clicks) %}
    (cast({{ clicks }} as double) + {{ var('coec_prior_clicks') }})
    / (cast({{ expected_clicks }} as double) + {{ var('coec_prior_clicks') }})
{% endmacro %}
