"""Load-time validation: every problem is reported with file, line and rule id, and a policy
with any problem is never loaded."""

from __future__ import annotations

import textwrap

import pytest
from policy_support import policy

from pgwarden.proxy.guard import Catalog
from pgwarden.proxy.policy import PolicyError, load_policy, load_policy_texts, policy_files

HEAD = "version: 1\nrules:\n"
GOOD_RULE = """\
  - id: good
    effect: allow
    when: "true"
    tables: [public.orders]
"""

# (label, rule text appended after HEAD, line, rule id, message fragment)
BAD_RULES = [
    ("unknown variable", "  - id: r1\n    effect: allow\n    when: 'user.id == 1'\n", 5, "r1",
     "unknown variable user"),
    ("unknown function", "  - id: r2\n    effect: allow\n    when: 'lower(principal.id) == \"a\"'\n", 5, "r2",
     "unknown function lower"),
    ("CEL syntax", "  - id: r3\n    effect: allow\n    when: 'principal.id == '\n", 5, "r3",
     "CEL syntax error"),
    ("fails on the sample", "  - id: r4\n    effect: allow\n    when: '1 / 0 == 1'\n", 5, "r4",
     "division by zero"),
    ("not a boolean", "  - id: r5\n    effect: allow\n    when: 'principal.id'\n", 5, "r5",
     "did not evaluate to a boolean"),
    ("unknown effect", "  - id: r6\n    effect: permit\n    when: 'true'\n", 4, "r6", "effect"),
    ("unknown key", "  - id: r7\n    effect: allow\n    when: 'true'\n    tabels: [public.x]\n", 6, "r7",
     "tabels: unknown key"),
    ("missing condition", "  - id: r8\n    effect: allow\n", 3, "r8", "when: required key is missing"),
    ("unqualified table glob", "  - id: r9\n    effect: allow\n    when: 'true'\n    tables: [orders]\n", 6,
     "r9", "must be schema-qualified"),
    ("bracket glob", "  - id: r10\n    effect: allow\n    when: 'true'\n    tables: ['public.[ab]*']\n", 6,
     "r10", "wildcards"),
    ("double star glob", "  - id: r11\n    effect: allow\n    when: 'true'\n    tables: ['**.x']\n", 6,
     "r11", "'**' is not supported"),
    ("unknown mask kind", "  - id: r12\n    effect: allow\n    when: 'true'\n    masks:\n"
     "      public.c.email: scramble\n", 7, "r12", "masks.public.c.email.kind"),
    ("mask parameter of another kind", "  - id: r13\n    effect: allow\n    when: 'true'\n    masks:\n"
     "      public.c.email: {kind: email, keep_last: 2}\n", 7, "r13", "takes no parameter keep_last"),
    ("mask column not schema.table.column", "  - id: r14\n    effect: allow\n    when: 'true'\n    masks:\n"
     "      customers.email: email\n", 7, "r14", "schema.table.column"),
    ("sql mask calling a forbidden function", "  - id: r15\n    effect: allow\n    when: 'true'\n"
     "    masks:\n      public.c.email: {kind: sql, expression: 'pg_read_file(value)'}\n", 7, "r15",
     "not allowed: pg_read_file"),
    ("row filter reading the arguments", "  - id: r16\n    effect: allow\n    when: 'true'\n"
     "    row_filters:\n      public.o.tenant_id: request.arguments.tenant\n", 7, "r16",
     "unknown variable request"),
    ("obligations on a deny rule", "  - id: r17\n    effect: deny\n    when: 'true'\n    row_cap: 5\n", 3,
     "r17", "a deny rule carries no obligations"),
    ("negative row cap", "  - id: r18\n    effect: allow\n    when: 'true'\n    row_cap: -1\n", 6, "r18",
     "row_cap"),
    ("bad tool glob", "  - id: r19\n    effect: allow\n    when: 'true'\n    tools: ['query tool']\n", 6,
     "r19", "tool pattern"),
    ("unknown method", "  - id: r20\n    effect: allow\n    when: 'true'\n    methods: [tools/delete]\n", 6,
     "r20", "methods"),
    ("bad rule id", "  - id: 'has spaces'\n    effect: allow\n    when: 'true'\n", 3, "has spaces", "id"),
]


@pytest.mark.parametrize(("label", "rule", "line", "rule_id", "fragment"), BAD_RULES)
def test_bad_rule_is_reported_with_line_and_rule_id(label, rule, line, rule_id, fragment):
    with pytest.raises(PolicyError) as caught:
        load_policy_texts([("p.yaml", HEAD + GOOD_RULE + rule)])
    problems = caught.value.problems
    assert len(problems) == 1, (label, problems)
    problem = problems[0]
    assert (problem.file, problem.rule_id) == ("p.yaml", rule_id), label
    assert problem.line == line + 4, (label, problem)   # GOOD_RULE is 4 lines
    assert fragment in problem.message, (label, problem.message)


@pytest.mark.parametrize(("label", "text", "line", "fragment"), [
    ("YAML syntax", "version: 1\nrules: [\n", 3, "YAML error"),
    ("duplicate key", HEAD + "  - id: a\n    effect: allow\n    effect: deny\n    when: 'true'\n", 5,
     "duplicate key 'effect'"),
    ("no version", "rules: []\n", 1, "missing 'version'"),
    ("future version", "version: 2\nrules: []\n", 1, "unsupported version 2"),
    ("no rules", "version: 1\nrules: []\n", 2, "rules"),
    ("not a mapping", "- a\n- b\n", 1, "a policy file is a mapping"),
    ("empty", "", 1, "empty"),
])
def test_bad_file_is_reported(label, text, line, fragment):
    with pytest.raises(PolicyError) as caught:
        load_policy_texts([("p.yaml", text)])
    first = caught.value.problems[0]
    assert first.line == line, (label, caught.value.problems)
    assert fragment in first.message, (label, first.message)


def test_every_problem_is_reported_not_only_the_first():
    text = HEAD + """\
  - id: a
    effect: allow
    when: 'nope == 1'
  - id: b
    effect: allow
    when: 'true'
    tables: [bad]
  - id: a
    effect: allow
    when: 'true'
"""
    with pytest.raises(PolicyError) as caught:
        load_policy_texts([("p.yaml", text)])
    found = {(p.rule_id, p.line) for p in caught.value.problems}
    assert found == {("a", 5), ("b", 9), ("a", 10)}
    assert "duplicate rule id (first defined at p.yaml:3)" in str(caught.value)


def test_duplicate_ids_across_files():
    with pytest.raises(PolicyError, match="duplicate rule id"):
        load_policy_texts([("a.yaml", HEAD + GOOD_RULE), ("b.yaml", HEAD + GOOD_RULE)])


def test_conflicting_search_paths():
    one = "version: 1\nsearch_path: [public]\nrules:\n" + GOOD_RULE
    two = "version: 1\nsearch_path: [app, public]\nrules:\n" + GOOD_RULE.replace("good", "other")
    with pytest.raises(PolicyError, match="search_path differs"):
        load_policy_texts([("a.yaml", one), ("b.yaml", two)])
    assert load_policy_texts([("b.yaml", two)]).search_path == ("app", "public")


CATALOG = Catalog.from_mapping({"public.customers": ["id", "email", "tenant_id"], "public.orders": ["id"]})


@pytest.mark.parametrize(("label", "extra", "fragment"), [
    ("unknown masked column", "    masks:\n      public.customers.phone: email\n",
     "table public.customers has no column 'phone'"),
    ("unknown masked table", "    masks:\n      public.clients.email: email\n",
     "table public.clients is not in the catalog"),
    ("unknown filtered column", "    row_filters:\n      public.orders.tenant_id: principal.tenant\n",
     "table public.orders has no column 'tenant_id'"),
    ("unknown table", "    tables: [public.ordres]\n", "table public.ordres is not in the catalog"),
])
def test_catalog_checks(label, extra, fragment):
    text = HEAD + "  - id: c\n    effect: allow\n    when: 'true'\n" + extra
    with pytest.raises(PolicyError) as caught:
        load_policy_texts([("p.yaml", text)], catalog=CATALOG)
    assert fragment in str(caught.value), label
    load_policy_texts([("p.yaml", text)])  # without a catalog there is nothing to check against


def test_a_policy_that_loads():
    p = policy("""
        version: 1
        description: fine
        rules:
          - id: ok
            effect: allow
            when: 'has(principal.claims.team) && principal.claims.team == "a"'
            tools: [query, "list_*"]
            tables: ["public.*", hr.employees]
            masks:
              public.customers.email: email
              public.customers.national_id: null
              public.customers.phone: {kind: partial, keep_last: 4, fill: "#"}
              hr.employees.email: {kind: hash, salt: pepper}
              public.customers.name: {kind: sql, expression: "left(value, 1) || '.'"}
            row_filters:
              public.customers.tenant_id: principal.tenant
            row_cap: 10
            functions: [date_trunc]
    """, catalog=None)
    rule = p.rules[0]
    assert rule.masks["public.customers"]["national_id"].kind == "null"
    assert rule.masks["public.customers"]["phone"].params == (("fill", "#"), ("keep_last", 4))
    assert rule.line == 5 and rule.file == "policy.yaml"


def test_revision_follows_content_not_names(tmp_path):
    (tmp_path / "a.yaml").write_text(HEAD + GOOD_RULE)
    (tmp_path / "b.yaml").write_text(HEAD + GOOD_RULE)
    first, second = load_policy([tmp_path / "a.yaml"]), load_policy([tmp_path / "b.yaml"])
    assert first.revision == second.revision and len(first.revision) == 64
    (tmp_path / "b.yaml").write_text(HEAD + GOOD_RULE + "\n# edited\n")
    assert load_policy([tmp_path / "b.yaml"]).revision != first.revision


def test_directories_expand_to_policy_files_without_tests(tmp_path):
    for name in ("b.yaml", "a.yml", "a_test.yaml", "notes.txt"):
        (tmp_path / name).write_text(HEAD + GOOD_RULE)
    assert [p.name for p in policy_files([tmp_path])] == ["a.yml", "b.yaml"]


def test_unreadable_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read file"):
        load_policy([tmp_path / "missing.yaml"])


def test_yaml_aliases_cannot_explode(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))
    with pytest.raises(PolicyError, match="too many nodes"):
        load_policy_texts([("bomb.yaml", textwrap.dedent(bomb))])


def test_shipped_policies_load_against_the_demo_catalog(reader_dsn):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "policies"
    catalog = Catalog.from_dsn(reader_dsn)
    for path in policy_files([root]):
        assert load_policy([path], catalog=catalog).rules
