{#- The history models' materialization (see incremental_features.sql): append the
    rows of the model's SQL when its plan (feature_build_plan(), written into the
    compiled SQL by feature_build_header()) says the build is incremental, else
    build the whole table under a temporary name and swap it in (swap_in.sql), so
    a failed build leaves the last good table in place either way. An append whose
    columns differ from the table's refuses. -#}
{% materialization incremental_features, default %}
  {%- set identifier = model['alias'] -%}
  {%- set plan = planned_build(sql) -%}
  {%- set old_relation = adapter.get_relation(database=database, schema=schema, identifier=identifier) -%}
  {%- set relations = swap_relations(identifier, schema, database) -%}
  {%- set target_relation, new_relation = relations['target'], relations['new'] -%}

  {{ log(identifier ~ ': ' ~ ('incremental, ' if plan['incremental'] else 'full build: ')
         ~ plan['reason'], info=True) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {% if plan['incremental'] %}
    {% call statement('new_rows') -%}
      {{ create_table_as(False, new_relation, sql) }}
    {%- endcall %}
    {%- set have = adapter.get_columns_in_relation(target_relation) | map(attribute='name') | map('lower') | list -%}
    {%- set new = adapter.get_columns_in_relation(new_relation) | map(attribute='name') | map('lower') | list -%}
    {% if have != new %}
      {% do adapter.drop_relation(new_relation) %}
      {{ exceptions.raise_compiler_error(
          identifier ~ ": the new rows' columns differ from the table's; run "
          ~ "`dbt build --full-refresh`") }}
    {% endif %}
    {% call statement('main') -%}
      insert into {{ target_relation }} ({{ new | join(', ') }})
      select {{ new | join(', ') }} from {{ new_relation }}
    {%- endcall %}
  {% else %}
    {% call statement('main') -%}
      {{ create_table_as(False, new_relation, sql) }}
    {%- endcall %}
    {% do swap_in(relations, old_relation) %}
  {% endif %}

  {% do record_feature_build_state(plan) %}
  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}

  {% if plan['incremental'] %}
    {% do adapter.drop_relation(new_relation) %}
  {% else %}
    {% do drop_swapped_out(relations, old_relation) %}
    {#- SQLite scans every row for the appended rows' tests and the plan's last
        second; an index on event_ts makes both a lookup (columnar engines skip
        by min/max on their own). After the swap: index names are per schema. -#}
    {% if target.type == 'sqlite' %}
      {% call statement('event_ts_index', auto_begin=True) -%}
        create index if not exists {{ schema }}.{{ identifier }}__event_ts
        on {{ identifier }} (event_ts)
      {%- endcall %}
      {{ adapter.commit() }}
    {% endif %}
  {% endif %}
  {{ run_hooks(post_hooks, inside_transaction=False) }}

  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}
