{#- Incremental point-in-time builds.

    The history models (int_interactions_checked -> int_interactions ->
    int_impression_history -> int_impression_exposure -> fct_impression_features)
    use the materialization `incremental_features`: a nightly `dbt build` after new
    days of impressions arrive computes each model's windows over the rows after
    the last built second alone, adds each key's totals over all earlier history
    (user, item, user x category, global: every earlier event is before every
    new one), and appends. The result equals a full rebuild
    (tests/test_incremental_build.py checks it, on SQLite and DuckDB).

    A build is incremental only when appending is exact; otherwise the model is
    rebuilt in full, and so is everything downstream of it, and the log says why:
    - the table or its build state is missing, or --full-refresh was given;
    - the model's SQL or a feature var changed since the table was built;
    - its inputs changed: the users or items (checked), the category slots (history);
    - its upstream feature model was rebuilt in full (a new generation);
    - raw interactions at or before the last built second changed, were added
      (late data) or removed, or new rows carry no valid time (checked);
    - a new row repeats the id of an earlier row that was rejected (checked:
      which copy wins depends on both).
    Not detected: an edit to a macro that a model calls (its own file's checksum
    is compared); run `dbt build --full-refresh` after one. Spark builds in full
    every time. -#}

{#- The build state of the incremental models, one row per table. Created and
    committed here (an on-run-start hook): the hooks before it may have opened a
    transaction on this connection, and the models' connections would not see a
    table created inside it. Emits no SQL. -#}
{% macro create_feature_build_state() %}
    {%- if execute -%}
        {%- set columns = {
            'relation_name': dbt.type_string(),
            'generation': dbt.type_string(),
            'upstream_generation': dbt.type_string(),
            'code_checksum': dbt.type_string(),
            'vars_json': dbt.type_string(),
            'inputs_fingerprint': dbt.type_string(),
            'built_at_ms': 'bigint',
            'invocation_id': dbt.type_string(),
            'appended_after_ts': 'bigint',
        } -%}
        {%- call statement('create_feature_build_state', auto_begin=True) -%}
            create table if not exists {{ target.schema }}.feature_build_state (
            {%- for name, type in columns.items() %}
                {{ name }} {{ type }}{{ ',' if not loop.last }}
            {%- endfor %}
            )
        {%- endcall -%}
        {#- a state table from an older version gets the columns it lacks -#}
        {%- set state = adapter.get_relation(database=target.database, schema=target.schema,
                                             identifier='feature_build_state') -%}
        {%- set present = adapter.get_columns_in_relation(state) | map(attribute='name')
                          | map('lower') | list if state is not none else columns.keys() | list -%}
        {%- set missing = [] -%}
        {%- for name, type in columns.items() if name not in present -%}
            {%- do missing.append(api.Column(name, type)) -%}
        {%- endfor -%}
        {%- if missing -%}
            {%- do alter_relation_add_remove_columns(state, missing, none) -%}
        {%- endif -%}
        {%- do adapter.commit() -%}
    {%- endif -%}
{% endmacro %}

{#- The materialization of the history models: incremental_features where the
    engine supports it, a plain table on Spark. -#}
{% macro feature_materialization() %}
    {{ return('table' if target.type == 'spark' else 'incremental_features') }}
{% endmacro %}

{#- What the model's build will be: {'incremental': bool, 'reason': text,
    'cutoff_ts': the last built second or none}, with what its build state will
    record (feature_build_state_fields; but for a first build). The
    model's SQL calls it (and selects only the new rows when incremental) and
    writes it into the compiled SQL with feature_build_header(); the
    materialization reads it back from there (planned_build) and records it, so
    the checks and their queries run once per build. -#}
{% macro feature_build_plan() %}
    {%- set plan = {'incremental': false, 'cutoff_ts': none} -%}
    {%- if not execute or model.resource_type != 'model'
            or config.get('materialized') != 'incremental_features' -%}
        {%- do plan.update({'reason': 'not an incremental build'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- if adapter.get_relation(database=this.database, schema=this.schema,
                                identifier=this.identifier) is none -%}
        {#- nothing to compare with (and, compiled outside a run, no inputs to
            read): record_feature_build_state reads what it records -#}
        {%- do plan.update({'reason': 'first build'}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- do plan.update(feature_build_state_fields()) -%}
    {%- set state = none -%}
    {%- if should_full_refresh() -%}
        {%- set reason = '--full-refresh' -%}
    {%- else -%}
        {%- set state = feature_build_state_row(this.identifier) -%}
        {%- set reason = feature_build_state_problem(state, plan) -%}
    {%- endif -%}
    {%- if reason is none -%}
        {%- set cutoff_ts = run_query(
                'select max(event_ts) from ' ~ this ~ ' where event_ts is not null'
            ).columns[0].values()[0] -%}
        {%- if cutoff_ts is none -%}
            {%- set reason = 'the table is empty' -%}
        {%- elif config.get('check_raw_prefix') -%}
            {%- set reason = raw_prefix_problem(cutoff_ts | int) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if reason is not none -%}
        {%- do plan.update({'reason': reason}) -%}
        {{ return(plan) }}
    {%- endif -%}
    {%- do plan.update({'incremental': true, 'reason': 'rows after second ' ~ (cutoff_ts | int),
                        'cutoff_ts': cutoff_ts | int, 'generation': state['generation']}) -%}
    {{ return(plan) }}
{% endmacro %}

{#- What a full build of the model records in its build state: a new
    generation, its upstream's generation and its inputs' fingerprint. -#}
{% macro feature_build_state_fields() %}
    {%- set upstream_name = config.get('upstream_feature_model') -%}
    {%- set upstream = feature_build_state_row(upstream_name) if upstream_name else none -%}
    {{ return({
        'generation': invocation_id ~ ':' ~ this.identifier,
        'upstream_generation': upstream['generation'] if upstream is not none else '',
        'inputs_fingerprint': feature_inputs_fingerprint(),
    }) }}
{% endmacro %}

{#- Why the table's recorded build state does not allow appending (none when it
    does): compared with what this build would record. -#}
{% macro feature_build_state_problem(state, plan) %}
    {%- if state is none -%}
        {{ return('no build state recorded') }}
    {%- elif state['code_checksum'] != model.checksum.checksum -%}
        {{ return("the model's SQL changed") }}
    {%- elif state['vars_json'] != incremental_vars_json() -%}
        {{ return('feature vars changed') }}
    {%- elif state['inputs_fingerprint'] != plan['inputs_fingerprint'] -%}
        {{ return(config.get('inputs_fingerprint') ~ ' changed') }}
    {%- elif config.get('upstream_feature_model') and (plan['upstream_generation'] == ''
            or state['upstream_generation'] != plan['upstream_generation']) -%}
        {{ return(config.get('upstream_feature_model') ~ ' was rebuilt in full') }}
    {%- endif -%}
    {{ return(none) }}
{% endmacro %}

{#- The plan as a comment line of the compiled SQL, for the materialization (and
    for whoever reads target/compiled). -#}
{% macro feature_build_header(plan) %}
    {{- '-- feature build plan: ' ~ tojson(plan, sort_keys=true) -}}
{% endmacro %}

{#- The plan that the model's SQL wrote with feature_build_header(). -#}
{% macro planned_build(compiled_sql) %}
    {%- set marker = '-- feature build plan: ' -%}
    {%- for line in compiled_sql.splitlines() if line.startswith(marker) -%}
        {{ return(fromjson(line[marker | length:])) }}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error(
        this.identifier ~ ' is materialized as incremental_features but its SQL does not '
        ~ 'write its plan: add {{ feature_build_header(plan) }} after '
        ~ '{% set plan = feature_build_plan() %}') }}
{% endmacro %}

{% macro feature_build_state_row(relation_name) %}
    {%- set result = run_query(
            "select generation, upstream_generation, code_checksum, vars_json, "
            ~ "inputs_fingerprint, invocation_id, appended_after_ts from "
            ~ target.schema ~ ".feature_build_state "
            ~ "where relation_name = '" ~ relation_name ~ "'") -%}
    {%- if result.rows | length == 0 -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set row = result.rows[0] -%}
    {{ return({'generation': row[0], 'upstream_generation': row[1], 'code_checksum': row[2],
               'vars_json': row[3], 'inputs_fingerprint': row[4] or '',
               'invocation_id': row[5], 'appended_after_ts': row[6]}) }}
{% endmacro %}

{#- The rows that this invocation appended to `relation`, an incremental model
    (its build state says after which second), or none when this invocation did
    not append to it (a full build, another model, a separate `dbt test`). -#}
{% macro appended_after_ts(relation) %}
    {%- if not execute or relation.identifier not in incremental_feature_models()
            or adapter.get_relation(database=target.database, schema=target.schema,
                                    identifier='feature_build_state') is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set state = feature_build_state_row(relation.identifier) -%}
    {%- if state is none or state['invocation_id'] != invocation_id
            or state['appended_after_ts'] is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(state['appended_after_ts'] | int) }}
{% endmacro %}

{% macro incremental_feature_models() %}
    {{ return(['int_interactions_checked', 'int_interactions', 'int_impression_history',
               'int_impression_exposure', 'fct_impression_features']) }}
{% endmacro %}

{#- Generic tests on an incremental model that the same `dbt build` appended to
    check the appended rows only (the earlier rows passed when they were built and
    have not changed), as dbt's `where` config would; `unique` keeps checking the
    whole table, since a duplicate may pair an old row with a new one. Overrides
    dbt's macro of the same name; the `where` config still applies. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set after = appended_after_ts(relation) if model.test_metadata.name != 'unique' else none -%}
    {%- if after is not none -%}
        {%- set where = ('(' ~ where ~ ') and ' if where else '') ~ 'event_ts > ' ~ after -%}
    {%- endif -%}
    {%- if where -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ where ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- Every var that decides the history models' values. -#}
{% macro incremental_vars_json() %}
    {{- return(feature_vars_json() ~ '|category_history_slots=' ~ var('category_history_slots')) -}}
{% endmacro %}

{#- What the model's inputs besides its upstream are, as text: a change makes the
    next build a full one. 'users and items': counts and sums over the staged
    dimensions (every column); 'category slots': the slot of each category. -#}
{% macro feature_inputs_fingerprint() %}
    {%- set kind = config.get('inputs_fingerprint') -%}
    {%- if kind == 'users and items' -%}
        {%- set parts = [] -%}
        {%- for name in ['stg_users', 'stg_items'] -%}
            {%- set relation = ref(name) -%}
            {%- set sums = [] -%}
            {%- for column in adapter.get_columns_in_relation(relation) -%}
                {%- do sums.append('coalesce(sum(length(cast(' ~ adapter.quote(column.name)
                                   ~ ' as ' ~ dbt.type_string() ~ '))), 0)') -%}
            {%- endfor -%}
            {%- set row = run_query('select count(*), ' ~ sums | join(', ') ~ ' from ' ~ relation).rows[0] -%}
            {%- do parts.append(name ~ ':' ~ row | map('string') | join(',')) -%}
        {%- endfor -%}
        {{ return(parts | join(';')) }}
    {%- elif kind == 'category slots' -%}
        {%- set rows = run_query('select category, slot from ' ~ ref('category_history_slots')
                                 ~ ' order by slot').rows -%}
        {%- set pairs = [] -%}
        {%- for row in rows -%}
            {%- do pairs.append(row[0] ~ '=' ~ (row[1] | int)) -%}
        {%- endfor -%}
        {{ return(pairs | join(',')) }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}

{#- Why appending to int_interactions_checked would not give a full rebuild's
    rows (none when it would): raw interactions at or before the last built
    second must be exactly those already judged (same count and sums of the
    parsed values, rows without a valid time included), and no new row may repeat
    the id of earlier rows that were all rejected. -#}
{% macro raw_prefix_problem(cutoff_ts) %}
    {%- set fingerprint -%}
        count(*),
        coalesce(sum(interaction_id), 0), coalesce(sum(user_id), 0),
        coalesce(sum(item_id), 0), coalesce(sum(event_ts), 0), coalesce(sum(clicked), 0),
        coalesce(sum(length(raw_interaction_id)), 0), coalesce(sum(length(raw_event_ts)), 0)
    {%- endset -%}
    {%- set query -%}
        with raw_parsed as (
            select {{ parsed_interaction_columns() }}
            from {{ source('raw', 'interactions') }}
        ),
        rejected_only_ids as (
            select interaction_id from {{ this }}
            where reason is not null and interaction_id is not null
            except
            select interaction_id from {{ this }}
            where reason is null and interaction_id in (
                select interaction_id from {{ this }} where reason is not null)
        )
        select 'raw', {{ fingerprint }} from raw_parsed
        where event_ts is null or event_ts <= {{ cutoff_ts }}
        union all
        select 'built', {{ fingerprint }} from {{ this }}
        where event_ts is null or event_ts <= {{ cutoff_ts }}
        union all
        select 'repeats', count(*), 0, 0, 0, 0, 0, 0, 0 from raw_parsed
        where event_ts > {{ cutoff_ts }}
            and interaction_id in (select interaction_id from rejected_only_ids)
    {%- endset -%}
    {%- set rows = {} -%}
    {%- for row in run_query(query).rows -%}
        {%- do rows.update({row[0]: row[1:] | map('int') | list}) -%}
    {%- endfor -%}
    {%- if rows['raw'] != rows['built'] -%}
        {{ return(((rows['raw'][0] - rows['built'][0]) | string) ~ ' more raw interactions '
                  ~ 'than judged at or before the last built second ' ~ cutoff_ts
                  ~ ', or changed ones (late data, or rows without a valid time)') }}
    {%- endif -%}
    {%- if rows['repeats'][0] > 0 -%}
        {{ return(rows['repeats'][0] ~ ' new interactions repeat the id of an earlier rejected one') }}
    {%- endif -%}
    {{ return(none) }}
{% endmacro %}

{#- Record the table's build state after it was built, as its plan says: a full
    build starts a new generation (every incremental model downstream then
    rebuilds in full). -#}
{% macro record_feature_build_state(plan) %}
    {%- if 'generation' not in plan -%}  {#- a first build: its plan read nothing -#}
        {%- do plan.update(feature_build_state_fields()) -%}
    {%- endif -%}
    {%- call statement('record_feature_build_state') -%}
        delete from {{ target.schema }}.feature_build_state
        where relation_name = '{{ this.identifier }}'
    {%- endcall -%}
    {%- call statement('record_feature_build_state') -%}
        insert into {{ target.schema }}.feature_build_state
            (relation_name, generation, upstream_generation, code_checksum, vars_json,
             inputs_fingerprint, built_at_ms, invocation_id, appended_after_ts)
        values (
            '{{ this.identifier }}',
            '{{ plan["generation"] }}',
            '{{ plan["upstream_generation"] }}',
            '{{ model.checksum.checksum }}',
            '{{ incremental_vars_json() | replace("'", "''") }}',
            '{{ plan["inputs_fingerprint"] | replace("'", "''") }}',
            {{ (modules.datetime.datetime.now(modules.pytz.utc).timestamp() * 1000) | int }},
            '{{ invocation_id }}',
            {{ plan['cutoff_ts'] if plan['incremental'] else 'null' }}
        )
    {%- endcall -%}
{% endmacro %}
