"""Sentinel data for every table of the three plane databases, for the cutover tests.

Each plane's script writes rows the way services would (receipts through the append
trigger, snapshots moved along legal transitions, so the audit trail fills itself), with
values whose text is easy to get wrong on the way: tabs, newlines, backslashes and quotes
in text, astral-plane Unicode, NULLs, bytea, jsonb with escapes, numerics with many digits,
microsecond and infinite timestamps, arrays, cidr. Run as the superuser on the pilot.
"""

from __future__ import annotations

from zeroui_db import contract

RECEIPTS = 10_000
_TRICKY = r"E'tab\there, newline\nthere, back\\slash, quote '' \" and 🧾 ✓ שלום'"
_DIGEST = "'sha256:' || repeat('ab', 32)"

TENANT = f"""
INSERT INTO receipts (idempotency_key, kind, source, actor, subject_ref, policy_digest, occurred_at, payload)
SELECT CASE WHEN g % 7 = 0 THEN NULL ELSE 'idem-' || g END,
       (ARRAY['policy.decision', 'ide.check', 'tenant:ingest.pr'])[1 + g % 3],
       'ide:vscode', CASE WHEN g % 5 = 0 THEN NULL ELSE 'user-' || (g % 97) END,
       'repo/zeroui/pr/' || g, CASE WHEN g % 2 = 0 THEN 'sha256:' || encode(sha256(g::text::bytea), 'hex') END,
       timestamptz '2026-01-01 00:00:00.123456+00' + g * interval '1.000001 s',
       jsonb_build_object('n', g, 'text', {_TRICKY}, 'nested', jsonb_build_object('list', jsonb_build_array(g, 1.5e300,
                          -0.000001, true, null)), 'pad', repeat(md5(g::text), 4))
FROM generate_series(1, {RECEIPTS}) g;

INSERT INTO integration_connections (provider_key, name, external_account, adapter_version, credential_ref, settings,
                                     status, status_reason)
VALUES ('github', {_TRICKY}, 'org-1', '1.2.3', 'vault:kv/github', '{{"a": [1, 2, {{"b": "\\u00e9\\\\"}}]}}',
        'active', NULL),
       ('gitlab', 'second', NULL, NULL, NULL, '{{}}', 'error', E'line one\\nline two');

INSERT INTO provider_cursors (connection_id, stream, cursor_value, watermark, version, last_attempt_at,
                              consecutive_failures, last_error)
SELECT c.id, s, 'cursor\\' || s, 'infinity', 3, '2026-02-03 04:05:06.000001+00', 0, NULL
FROM integration_connections c, unnest(ARRAY['pull_requests', 'issues']) s;

INSERT INTO webhook_deliveries (connection_id, dedup_key, event_type, signature_valid, payload_sha256, payload_bytes,
                                status, processed_at)
SELECT (SELECT min(id) FROM integration_connections), 'delivery-' || g, 'pull_request.opened', g % 2 = 0,
       sha256(g::text::bytea), g * 10, CASE WHEN g % 2 = 0 THEN 'processed' ELSE 'received' END,
       CASE WHEN g % 2 = 0 THEN now() END
FROM generate_series(1, 20) g;

INSERT INTO history_facts (subject_kind, subject_ref, fact_key, value, valid_from, valid_to, source, source_delivery_id)
SELECT 'pull_request', 'pr/' || g, 'review_count', to_jsonb(g), '2026-01-01+00'::timestamptz + g * interval '1 day',
       CASE WHEN g % 3 = 0 THEN NULL ELSE '2027-01-01+00'::timestamptz END, 'webhook',
       (SELECT min(id) FROM webhook_deliveries)
FROM generate_series(1, 30) g;

INSERT INTO decisions (decision_kind, subject_kind, subject_ref, as_of, input_digest, policy_digest, engine_version,
                       outcome, reasons, receipt_seq)
SELECT 'merge_gate', 'pull_request', 'pr/' || g, now(), sha256(('in' || g)::bytea), {_DIGEST}, '0.9.1',
       (ARRAY['allow', 'deny', 'warn'])[1 + g % 3], '[{{"rule": "r1", "msg": "ok\\ttab"}}]', g * 10
FROM generate_series(1, 25) g;

INSERT INTO context_snapshots (scope_kind, scope_ref, as_of, status, redaction_policy_digest, redaction_summary,
                               content_sha256, size_bytes, storage_uri, ready_at, expires_at)
VALUES ('repo', 'zeroui/core', now(), 'ready', {_DIGEST}, '{{"emails": 3}}', sha256('snap'), 123456,
        's3://bucket/snap 1', now(), 'infinity'),
       ('workspace', 'ws/{{}}', now(), 'building', {_DIGEST}, '{{}}', NULL, NULL, NULL, NULL, NULL);

INSERT INTO context_index_entries (snapshot_id, entry_kind, entry_key, summary, attributes, content_sha256, size_bytes)
SELECT (SELECT min(id) FROM context_snapshots), 'file', 'src/' || g || '.py', {_TRICKY}, '{{"lang": "python"}}',
       sha256(g::text::bytea), g
FROM generate_series(1, 40) g;

INSERT INTO context_exports (snapshot_id, destination, purpose, requested_by, status, delivered_at, export_sha256)
SELECT id, 'ide', 'review context', 'svc-tenant', 'delivered', now(), sha256('x') FROM context_snapshots;
"""

PRODUCT = f"""
SET zeroui.actor = 'sentinel';
INSERT INTO policy_bundles (tenant_id, bundle_key, title, description, created_by)
VALUES ('00000000-0000-0000-0000-000000000001', 'core', {_TRICKY}, NULL, 'alice'),
       ('00000000-0000-0000-0000-000000000002', 'extra', 'Extra', E'multi\\nline', 'bob');

INSERT INTO policy_snapshots (bundle_id, version, document, digest, size_bytes, created_by)
SELECT b.id, v, jsonb_build_object('v', v, 'rules', jsonb_build_array('a\\b', 'c"d')),
       'sha256:' || encode(sha256((b.id || '/' || v)::bytea), 'hex'), 100 + v, 'alice'
FROM policy_bundles b, generate_series(1, 3) v;
""" + """
-- Move snapshots along legal transitions: version 1 released, 2 approved, 3 stays a draft.
UPDATE policy_snapshots SET state = 'review' WHERE version IN (1, 2);
UPDATE policy_snapshots SET state = 'approved', signature = 'sig', signing_key_id = 'key-1' WHERE version IN (1, 2);
UPDATE policy_snapshots SET state = 'released' WHERE version = 1;

INSERT INTO policy_releases (tenant_id, channel, snapshot_id, released_by, notes)
SELECT b.tenant_id, 'stable', s.id, 'carol', E'first\\trelease' FROM policy_snapshots s JOIN policy_bundles b
ON b.id = s.bundle_id WHERE s.version = 1;

-- Supersede the first bundle's release, then retire its snapshot: the release now names a
-- retired snapshot, which the release guard would refuse on a plain INSERT.
UPDATE policy_releases SET superseded_at = now() WHERE tenant_id = '00000000-0000-0000-0000-000000000001';
UPDATE policy_snapshots SET state = 'retired'
WHERE version = 1 AND bundle_id = (SELECT id FROM policy_bundles WHERE bundle_key = 'core');

INSERT INTO orchestration_runs (tenant_id, workflow_key, workflow_version, idempotency_key, status, priority, params,
                                input_digest, attempt, not_before, finished_at)
SELECT '00000000-0000-0000-0000-000000000001', 'report.monthly', '1', 'run-' || g,
       CASE WHEN g % 2 = 0 THEN 'succeeded' ELSE 'pending' END, (g % 3)::smallint, '{"month": "2026-01"}',
       sha256(g::text::bytea), 0, now(), CASE WHEN g % 2 = 0 THEN now() END
FROM generate_series(1, 12) g;

INSERT INTO orchestration_steps (run_id, ordinal, step_key, status, result, output_digest, finished_at)
SELECT r.id, o, 'step-' || o, 'succeeded', '{"rows": 1e-7}', sha256(o::text::bytea), now()
FROM orchestration_runs r, generate_series(0, 2) o;

INSERT INTO governance_requests (tenant_id, kind, snapshot_id, subject_ref, requested_by, justification)
SELECT '00000000-0000-0000-0000-000000000001', 'policy_approval', id, NULL, 'alice', E'needs \\\\ review'
FROM policy_snapshots WHERE version = 2;
INSERT INTO governance_requests (tenant_id, kind, subject_ref, requested_by, justification, expires_at)
VALUES ('00000000-0000-0000-0000-000000000002', 'waiver', 'rule/r9', 'bob', 'temporary', 'infinity');

INSERT INTO governance_votes (request_id, approver, vote, comment)
SELECT id, a, 'approve', 'lgtm 👍' FROM governance_requests, unnest(ARRAY['dave', 'erin']) a;
-- Decided after the votes: the vote guard would refuse those votes on a plain INSERT now.
UPDATE governance_requests SET state = 'approved', decided_at = now() WHERE kind = 'policy_approval';

INSERT INTO tenant_metric_daily (tenant_id, metric_key, day, value_sum, sample_count, value_min, value_max)
SELECT '00000000-0000-0000-0000-000000000001', 'decisions.deny', date '2026-01-01' + g,
       12345678901234567890.123456789, g, -0.5, 99999999999.000000001
FROM generate_series(0, 30) g;

INSERT INTO tenant_reports (tenant_id, report_kind, period_start, period_end, status, run_id, summary)
SELECT '00000000-0000-0000-0000-000000000001', 'usage', date '2026-01-01', date '2026-01-31', 'pending', min(id),
       '{"total": 3}' FROM orchestration_runs;
"""

SHARED = f"""
INSERT INTO providers (provider_key, display_name, category, homepage_url, docs_url, status)
VALUES ('github', {_TRICKY}, 'scm', 'https://github.com', NULL, 'active'),
       ('slack', 'Slack', 'chat', NULL, NULL, 'deprecated');

INSERT INTO provider_adapter_versions (provider_id, version, artifact_digest, min_core_version, status, released_at,
                                       deprecated_at, notes)
SELECT id, '1.0.' || g, {_DIGEST}, '0.1.0', 'supported', now(), NULL, E'n\\\\otes'
FROM providers, generate_series(0, 2) g;

INSERT INTO provider_allowlist_entries (provider_id, entry_kind, host, network, scope, reason, added_by, expires_at)
SELECT id, 'ingress_network', NULL, '192.30.252.0/22', NULL, 'webhooks', 'ops', 'infinity' FROM providers;
INSERT INTO provider_allowlist_entries (provider_id, entry_kind, host, network, scope, reason, added_by)
SELECT id, 'egress_host', 'api.github.com:443', NULL, NULL, 'api', 'ops' FROM providers;

INSERT INTO eval_suites (suite_key, description, owner_team) VALUES ('adapters.smoke', {_TRICKY}, 'qa');
INSERT INTO eval_fixtures (suite_id, fixture_key, version, origin, content_sha256, size_bytes, storage_uri, expected)
SELECT s.id, 'fixture/' || g, 1, 'synthetic', sha256(g::text::bytea), g, 's3://f/' || g, '{{"ok": true}}'
FROM eval_suites s, generate_series(1, 10) g;
INSERT INTO eval_runs (suite_id, subject_kind, subject_version, adapter_version_id, status, triggered_by, environment,
                       started_at, finished_at, fixtures_total, fixtures_passed)
SELECT s.id, 'adapter', '1.0.0', (SELECT min(id) FROM provider_adapter_versions), 'passed', 'ci', '{{"image": "x"}}',
       now(), now(), 10, 10 FROM eval_suites s;
INSERT INTO eval_results (run_id, fixture_id, outcome, score, duration_ms, output_sha256, output_bytes, message)
SELECT r.id, f.id, 'pass', 0.12345, f.id * 3, sha256(f.id::text::bytea), 7, NULL FROM eval_runs r, eval_fixtures f;

INSERT INTO artifacts (artifact_kind, name, version, digest, size_bytes, registry_uri)
SELECT 'python_wheel', 'zeroui-core', '1.' || g, 'sha256:' || encode(sha256(('a' || g)::bytea), 'hex'), g * 1000, NULL
FROM generate_series(1, 5) g;
INSERT INTO sboms (artifact_id, format, spec_version, document_sha256, size_bytes, component_count, generator,
                   storage_uri, generated_at)
SELECT id, 'spdx-json', '2.3', sha256(id::text::bytea), 100, 2, 'syft 1.0', 's3://sbom/' || id, now() FROM artifacts;
INSERT INTO sbom_components (sbom_id, purl, name, version, license_expr, component_sha256)
SELECT s.id, 'pkg:pypi/' || n || '@1.0', n, '1.0', 'MIT OR Apache-2.0', NULL
FROM sboms s, unnest(ARRAY['psycopg', 'click']) n;
INSERT INTO provenance_attestations (artifact_id, predicate_type, slsa_level, builder_id, source_uri, source_revision,
                                     envelope_sha256, signer_identity, tlog_index, built_at)
SELECT id, 'https://slsa.dev/provenance/v1', 3, 'gha', 'git+https://x/y', 'abcdef0', sha256(('e' || id)::bytea),
       'ci@zeroui', 42, now() FROM artifacts;
INSERT INTO supply_chain_verifications (artifact_id, check_kind, attestation_id, verifier, verifier_version, outcome,
                                        message)
SELECT a.artifact_id, 'provenance', a.id, 'slsa-verifier', '2.0', 'pass', {_TRICKY} FROM provenance_attestations a;

INSERT INTO metric_definitions (metric_key, kind, unit, description, owner_team, label_keys)
VALUES ('decisions.total', 'counter', '1', 'decisions', 'core', ARRAY['outcome', 'with space', 'q"uote', NULL]),
       ('latency', 'histogram', 's', 'latency', 'core', '{{}}');
INSERT INTO telemetry_sources (service_key, plane, instance_id, version) VALUES ('ingest', 'tenant', 'i-1', '1.0');
INSERT INTO alert_rules (rule_key, metric_id, expression, for_seconds, severity, route, runbook_url, enabled)
SELECT 'rule-' || id, id, 'rate(x[5m]) > 1', 60, 'warning', 'oncall', 'https://runbooks/x', id % 2 = 0
FROM metric_definitions;
"""

SCRIPTS = {contract.TENANT: TENANT, contract.PRODUCT: PRODUCT, contract.SHARED: SHARED}
