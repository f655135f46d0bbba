-- Shared plane, migration 0003: SBOM, provenance and supply-chain verification metadata
-- for the artifacts ZeroUI builds and runs (images, wheels, IDE extensions, adapters).
-- Documents (SBOMs, attestation envelopes) live in object storage; here: digests, sizes,
-- the facts that get queried, and verification outcomes.

-- zeroui-class: shared/supply_chain: artifacts identified by digest (kind, name, version)
CREATE TABLE artifacts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    artifact_kind text NOT NULL,
    name          text NOT NULL,          -- e.g. image repository, package name
    version       text NOT NULL,
    digest        text NOT NULL,          -- the identity that counts
    size_bytes    bigint,
    registry_uri  text,                   -- where it is published
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT artifacts_digest_key UNIQUE (digest),
    CONSTRAINT artifacts_kind CHECK (artifact_kind IN ('container_image', 'python_wheel', 'npm_package', 'ide_extension', 'binary', 'sql_bundle', 'other')),
    CONSTRAINT artifacts_name_len CHECK (length(name) BETWEEN 1 AND 500),
    CONSTRAINT artifacts_version_len CHECK (length(version) BETWEEN 1 AND 200),
    CONSTRAINT artifacts_digest_format CHECK (digest ~ '^sha(256:[0-9a-f]{64}|512:[0-9a-f]{128})$'),
    CONSTRAINT artifacts_size CHECK (size_bytes >= 0)
);

CREATE INDEX artifacts_name_idx ON artifacts (artifact_kind, name, version);

-- zeroui-class: shared/supply_chain: SBOM documents per artifact (format, digest, size, component count)
CREATE TABLE sboms (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    artifact_id     bigint NOT NULL REFERENCES artifacts (id),
    format          text NOT NULL,
    spec_version    text NOT NULL,
    document_sha256 bytea NOT NULL,
    size_bytes      bigint NOT NULL,
    component_count integer NOT NULL,
    generator       text NOT NULL,        -- tool and version that produced it
    storage_uri     text NOT NULL,
    generated_at    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sboms_document_key UNIQUE (artifact_id, format, document_sha256),
    CONSTRAINT sboms_format CHECK (format IN ('spdx-json', 'cyclonedx-json', 'cyclonedx-xml')),
    CONSTRAINT sboms_sha256 CHECK (octet_length(document_sha256) = 32),
    CONSTRAINT sboms_size CHECK (size_bytes >= 0),
    CONSTRAINT sboms_components CHECK (component_count >= 0)
);

-- zeroui-class: shared/supply_chain: components listed in an SBOM (purl, version, licence), for "which artifacts contain X"
CREATE TABLE sbom_components (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sbom_id       bigint NOT NULL REFERENCES sboms (id) ON DELETE CASCADE,
    purl          text NOT NULL,          -- package URL, e.g. pkg:pypi/psycopg@3.1.18
    name          text NOT NULL,
    version       text,
    license_expr  text,                   -- SPDX licence expression
    component_sha256 bytea,
    CONSTRAINT sbom_components_key UNIQUE (sbom_id, purl),
    CONSTRAINT sbom_components_purl_format CHECK (purl ~ '^pkg:[a-z0-9.+-]+/'),
    CONSTRAINT sbom_components_sha256 CHECK (octet_length(component_sha256) = 32)
);

CREATE INDEX sbom_components_name_idx ON sbom_components (name, version);
CREATE INDEX sbom_components_purl_idx ON sbom_components (purl);

-- zeroui-class: shared/supply_chain: provenance attestations per artifact (SLSA level, builder, source revision, signer)
CREATE TABLE provenance_attestations (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    artifact_id      bigint NOT NULL REFERENCES artifacts (id),
    predicate_type   text NOT NULL,        -- e.g. https://slsa.dev/provenance/v1
    slsa_level       smallint,
    builder_id       text NOT NULL,
    source_uri       text NOT NULL,
    source_revision  text NOT NULL,        -- commit the build came from
    envelope_sha256  bytea NOT NULL,       -- of the DSSE envelope as stored
    signer_identity  text NOT NULL,        -- certificate subject or key id
    signer_issuer    text,                 -- OIDC issuer for keyless signing
    tlog_index       bigint,               -- transparency log entry, if logged
    built_at         timestamptz,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT provenance_attestations_envelope_key UNIQUE (artifact_id, envelope_sha256),
    CONSTRAINT provenance_attestations_slsa_level CHECK (slsa_level BETWEEN 0 AND 4),
    CONSTRAINT provenance_attestations_sha256 CHECK (octet_length(envelope_sha256) = 32),
    CONSTRAINT provenance_attestations_revision CHECK (source_revision ~ '^[0-9a-f]{7,64}$'),
    CONSTRAINT provenance_attestations_tlog CHECK (tlog_index >= 0)
);

CREATE INDEX provenance_attestations_source_idx ON provenance_attestations (source_uri, source_revision);

-- zeroui-class: shared/supply_chain: verification outcomes per artifact (signature, provenance, SBOM, vulnerability, policy checks)
CREATE TABLE supply_chain_verifications (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    artifact_id      bigint NOT NULL REFERENCES artifacts (id),
    check_kind       text NOT NULL,
    attestation_id   bigint REFERENCES provenance_attestations (id),
    sbom_id          bigint REFERENCES sboms (id),
    verifier         text NOT NULL,        -- tool that checked
    verifier_version text NOT NULL,
    outcome          text NOT NULL,
    findings_count   integer NOT NULL DEFAULT 0,
    message          text,
    verified_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT supply_chain_verifications_kind CHECK (check_kind IN ('signature', 'provenance', 'sbom', 'vulnerability_scan', 'policy')),
    CONSTRAINT supply_chain_verifications_subject CHECK (
        (check_kind <> 'provenance' OR attestation_id IS NOT NULL) AND (check_kind <> 'sbom' OR sbom_id IS NOT NULL)),
    CONSTRAINT supply_chain_verifications_outcome CHECK (outcome IN ('pass', 'fail', 'error')),
    CONSTRAINT supply_chain_verifications_findings CHECK (findings_count >= 0),
    CONSTRAINT supply_chain_verifications_message_len CHECK (length(message) <= 4000)
);

-- The latest verdict of each check for an artifact (admission decisions).
CREATE INDEX supply_chain_verifications_artifact_idx ON supply_chain_verifications (artifact_id, check_kind, verified_at DESC);
-- Verifications are evidence: recorded once, never edited.
REVOKE UPDATE ON supply_chain_verifications FROM :"app_role";
