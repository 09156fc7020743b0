{#- Called by the on-run-start hook: stop with one clear line when raw data is
    missing, instead of a SQL error deep inside a staging model. Emits no SQL. -#}
{% macro check_raw_tables() %}
    {% if execute %}
        {% for table in ['users', 'items', 'interactions'] %}
            {% set node = graph.sources['source.recsys.raw.' ~ table] %}
            {% set relation = adapter.get_relation(
                database=node.database, schema=node.schema, identifier=node.identifier) %}
            {% if relation is none %}
                {{ exceptions.raise_compiler_error(
                    "raw table '" ~ table ~ "' not found (is raw.db missing or empty? "
                    ~ "RECSYS_DATA_DIR=" ~ env_var('RECSYS_DATA_DIR', 'data')
                    ~ "): run `make data` or load your own data first") }}
            {% endif %}
        {% endfor %}
    {% endif %}
{% endmacro %}
