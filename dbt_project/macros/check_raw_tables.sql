{#- Called by the on-run-start hook: stop with one clear line when raw data is
    missing or lacks the active data set's attribute columns, instead of a SQL
    error deep inside a staging model. Emits no SQL. -#}
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
            {% set entity = {'users': 'user', 'items': 'item', 'interactions': 'context'}[table] %}
            {% set present = adapter.get_columns_in_relation(relation)
                | map(attribute='name') | map('lower') | list %}
            {% for attribute in dataset_attributes(entity) %}
                {% if attribute['name'] | lower not in present %}
                    {{ exceptions.raise_compiler_error(
                        "raw table '" ~ table ~ "' has no column '" ~ attribute['name']
                        ~ "', an attribute of dataset '" ~ var('dataset')
                        ~ "' (vars.datasets in dbt_project.yml): set RECSYS_DATASET "
                        ~ "to the data set loaded into raw.db") }}
                {% endif %}
            {% endfor %}
        {% endfor %}
    {% endif %}
{% endmacro %}
