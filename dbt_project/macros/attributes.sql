{#- Attribute columns of the active data set: var('dataset') picks an entry of
    var('datasets') in dbt_project.yml. entity is user, item or context. -#}
{% macro dataset_attributes(entity) %}
    {% set name = var('dataset') %}
    {% set datasets = var('datasets') %}
    {% if name not in datasets %}
        {{ exceptions.raise_compiler_error(
            "unknown dataset '" ~ name ~ "' (RECSYS_DATASET): vars.datasets in "
            ~ "dbt_project.yml declares " ~ (datasets.keys() | list | join(', '))) }}
    {% endif %}
    {{ return(datasets[name].get(entity ~ '_attributes') or []) }}
{% endmacro %}

{#- The attributes as registry entries for the feature mart's meta: every field
    models_py needs, with the group defaulting to the entity's profile; then the
    category slot columns (category_slot_features). -#}
{% macro feature_attributes() %}
    {% set defaults = {'user': 'user_profile', 'item': 'item_profile', 'context': 'context'} %}
    {% set entries = [] %}
    {% for entity in ['user', 'item', 'context'] %}
        {% for attribute in dataset_attributes(entity) %}
            {% set entry = {
                'name': attribute['name'],
                'type': attribute['type'],
                'group': attribute.get('group') or defaults[entity],
                'nullable': true,
            } %}
            {% if attribute.get('transform') %}
                {% do entry.update({'transform': attribute['transform']}) %}
            {% endif %}
            {% if attribute.get('serving_value') is not none %}
                {% do entry.update({'serving_value': attribute['serving_value']}) %}
            {% endif %}
            {% do entries.append(entry) %}
        {% endfor %}
    {% endfor %}
    {#- and the per-category history slots, whose count is a var too -#}
    {{ return(entries + category_slot_features()) }}
{% endmacro %}

{#- Parse a raw attribute by its declared type: numeric to double (NULL when
    not a number), categorical to text. -#}
{% macro parse_attribute(attribute) %}
    {%- if attribute['type'] == 'numeric' -%}
        {{ parse_double(attribute['name']) }}
    {%- elif attribute['type'] == 'categorical' -%}
        {{ as_text(attribute['name']) }}
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "attribute '" ~ attribute['name'] ~ "' of dataset '" ~ var('dataset')
            ~ "': type must be categorical or numeric, got '" ~ attribute['type'] ~ "'") }}
    {%- endif -%}
{% endmacro %}

{#- ", relation.attr_1, relation.attr_2": the entity's attribute columns as a
    select-list continuation (empty when the data set declares none); without
    a relation, the names alone. -#}
{% macro attribute_columns(entity, relation=none) %}
    {%- for attribute in dataset_attributes(entity) -%}
        , {% if relation %}{{ relation }}.{% endif %}{{ attribute['name'] }}
    {% endfor -%}
{% endmacro %}

{#- ", <parsed attr_1> as attr_1, ...": the entity's raw attributes parsed by
    declared type, as a select-list continuation. -#}
{% macro parsed_attribute_columns(entity) %}
    {%- for attribute in dataset_attributes(entity) -%}
        , {{ parse_attribute(attribute) }} as {{ attribute['name'] }}
    {% endfor -%}
{% endmacro %}
