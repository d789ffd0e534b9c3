/* Configuration: loaded and validated once from YAML (libfyaml), then an immutable,
 * refcounted snapshot shared by every worker thread. Runtime code never parses files; it
 * only reads these structs. A reload builds a new snapshot and swaps it in (issue 3).
 *
 * Money is integer micro-units (1 USD = 1,000,000); prices are per million tokens. */
#ifndef CMX_CONFIG_CONFIG_H
#define CMX_CONFIG_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "limits/limits.h"
#include <stdbool.h>

#include "core/buf.h"

struct cmx_dep_state;

enum cmx_provider_type {
    CMX_PROVIDER_OPENAI,       /* api.openai.com: Authorization: Bearer, {base}/chat/completions */
    CMX_PROVIDER_AZURE_OPENAI, /* api-key header; classic deployments URL or /openai/v1 */
    CMX_PROVIDER_OPENAI_COMPATIBLE, /* vLLM, llama.cpp, Ollama...: like openai, key optional */
    CMX_PROVIDER_BEDROCK,           /* AWS Bedrock runtime: Converse, SigV4 or Bedrock API key */
    /* ---- issue 7: Anthropic and Vertex AI */
    CMX_PROVIDER_ANTHROPIC, /* Messages API: x-api-key, {base}/v1/messages */
    CMX_PROVIDER_VERTEX,    /* Vertex AI Gemini: OAuth bearer, :generateContent */
};

struct cmx_provider_cfg {
    char *name;                  /* unique, [A-Za-z0-9_.-]+ */
    enum cmx_provider_type type; /* wire format + URL/auth scheme */
    char *cloud;                 /* cloud partner label (azure, aws, gcp, openai, onprem...) */
    char *region;                /* may be NULL */
    char *base_url;              /* http(s)://host[:port][/path], no trailing slash */
    char *api_key;               /* secret, expanded from ${ENV}; NULL when none; never logged */
    char *api_version;           /* azure_openai: classic surface when set, /openai/v1 when NULL */
    char *ca_file;          /* tls.ca_file: extra CA bundle (tests, private CAs); NULL = system */
    int connect_timeout_ms; /* overrides routing.connect_timeout_ms when > 0 */
    int first_byte_timeout_ms; /* overrides routing.first_byte_timeout_ms when > 0 */
    int idle_timeout_ms;       /* overrides routing.idle_timeout_ms when > 0 */
    int line;                  /* line of the entry in the config file, for messages */
    /* type bedrock (src/config/config_bedrock.c resolves these at load time) */
    char *access_key_id;     /* SigV4 key id (config, profile or AWS_* env); NULL with api_key */
    char *secret_access_key; /* secret; never logged */
    char *session_token;     /* temporary credentials (x-amz-security-token); NULL when none */
    char *profile;           /* ~/.aws/credentials section to read the keys from; NULL = none */
    /* ---- issue 7: anthropic and vertex */
    int max_tokens_default; /* anthropic: max_tokens when the client gives none (4096) */
    char *project;          /* vertex: GCP project id */
    char *
        credentials_file; /* vertex: service-account JSON key (or GOOGLE_APPLICATION_CREDENTIALS) */
    char *access_token;   /* vertex: a fixed bearer token instead of a key file; secret */
};

struct cmx_price {
    int64_t input_per_mtok;        /* micro-units per 1M prompt tokens */
    int64_t output_per_mtok;       /* micro-units per 1M completion tokens */
    int64_t cached_input_per_mtok; /* micro-units per 1M cached prompt tokens; -1 = use input */
};

struct cmx_deployment_cfg {
    struct cmx_provider_cfg *provider; /* points into cmx_config.providers */
    char *model;                       /* upstream model id, or the Azure deployment name */
    int priority;                      /* lower first; default 1 */
    int weight;                        /* for weighted routing; default 1 */
    bool has_price;                    /* price block present */
    struct cmx_price price;            /* valid when has_price */
    bool has_cost;                     /* cost block present (the ledger's upstream cost) */
    struct cmx_price cost;             /* valid when has_cost: what the upstream charges */
    int connect_timeout_ms;            /* deployments[].timeouts: override provider/global > 0 */
    int first_byte_timeout_ms;
    int idle_timeout_ms;
    struct cmx_dep_state *state; /* shared health/metrics (cmx_router_attach) */
    int line;                    /* line of the entry, for messages */
};

struct cmx_model_cfg {
    char *name;                             /* public name clients send as "model" */
    struct cmx_deployment_cfg *deployments; /* n_deployments entries, config order */
    size_t n_deployments;                   /* >= 1 */
    char *strategy;                         /* models[].routing.strategy; NULL = global */
    char *product; /* models[].product, default: its name when such a product is defined */
    int line;      /* line of the entry, for messages */
};

struct cmx_routing_cfg {
    char *strategy;            /* priority (default) | weighted | least_latency | lowest_price */
    int max_attempts;          /* >= 1, default 3 */
    int timeout_s;             /* total budget of one client request, default 600 */
    int connect_timeout_ms;    /* default 10000 */
    int first_byte_timeout_ms; /* until the upstream's response headers, default 600000 */
    int idle_timeout_ms;       /* max silence between streamed chunks, default 120000 */
    int circuit_failures;      /* routing.circuit.failures: consecutive failures, default 5 */
    int circuit_cooldown_ms;   /* routing.circuit.cooldown_s (decimal seconds), default 30 s */
    int circuit_max_wait_ms;   /* routing.circuit.max_wait_s (decimal seconds), default 10 s */
};

struct cmx_server_cfg {
    size_t max_body_bytes;    /* request body limit, default 10 MiB (413 beyond) */
    size_t max_header_bytes;  /* request line + headers limit, default 64 KiB (431 beyond) */
    int header_timeout_ms;    /* from first byte of a request to end of headers, default 30000 */
    int body_timeout_ms;      /* max silence while reading a body, default 60000 */
    int keepalive_timeout_ms; /* idle keep-alive connection, default 75000 */
    int drain_timeout_s;      /* SIGTERM: max wait for in-flight requests, default 30 */
    bool access_log;          /* one JSON line per request on stdout, default true */
    bool protect_probes;      /* /healthz, /readyz, /metrics need the admin key (when set) */
};

struct cmx_arena;
struct cmx_config_name_index;
struct cmx_agreements;

/* A tenant: a team or customer whose virtual keys share cloud, region and model rules, a
 * budget and rate limits (tenants[] in the config; src/tenants/ applies them). */
struct cmx_tenant_cfg {
    char *name;                    /* unique, [A-Za-z0-9_.-]+ */
    const char **preferred_clouds; /* routed to first, in this order, when eligible */
    size_t n_preferred_clouds;
    const char **allowed_clouds; /* never leaves these; 0 entries = any cloud */
    size_t n_allowed_clouds;
    const char **regions; /* data residency; 0 entries = any region */
    size_t n_regions;
    const char **models; /* globs of public model names; 0 entries = every model */
    size_t n_models;
    int64_t budget_micros;     /* budget.amount in micro-units; -1 = no budget */
    char *budget_currency;     /* budget.currency (ISO 4217, e.g. USD) */
    const char *budget_period; /* "day", "week" or "month" (UTC) */
    int rpm;                   /* limits.rpm: requests per minute; 0 = unlimited */
    int tpm;                   /* limits.tpm: tokens per minute; 0 = unlimited */
    int line;
};

struct cmx_config {
    atomic_int refcount;                /* cmx_config_ref / cmx_config_unref */
    char *path;                         /* file it was loaded from */
    char *listen_host;                  /* default 127.0.0.1 */
    int listen_port;                    /* default 8080 */
    int workers;                        /* 0 = one per core */
    struct cmx_provider_cfg *providers; /* n_providers entries */
    size_t n_providers;
    struct cmx_model_cfg *models; /* n_models entries, config order */
    size_t n_models;
    struct cmx_routing_cfg routing;
    struct cmx_server_cfg server;
    char *admin_key;         /* bearer token of the admin API; NULL = served on loopback only */
    struct cmx_arena *arena; /* owns every string and array of the snapshot */
    struct cmx_config_name_index *provider_idx; /* n_providers entries by name (private) */
    struct cmx_config_name_index *model_idx;    /* n_models entries by name (private) */
    struct cmx_agreements *agreements;          /* products, maker, agreements (NULL when none) */
    struct cmx_tenant_cfg *tenants;             /* n_tenants entries, config order */
    size_t n_tenants;
    const char *auth;                /* "none", "keys", or NULL: keys once a tenant or key exists */
    struct cmx_limits_config limits; /* limits: memory (default) or redis://; see limits.h */
    bool limits_given;               /* the limits key was present */
    /* ledger: (src/ledger/) */
    char *ledger_url;        /* url ("off": no ledger); NULL: sqlite://cloudmux.db by the config */
    char *ledger_durability; /* "batched" (default) | "per_request" */
    char *ledger_spool;      /* spool file; NULL: derived from the url (cmx_ledger_spool_path) */
};

/* Diagnostics collected while loading: one line per problem, "FILE:LINE: error: MSG" or
 * "FILE:LINE: warning: MSG", in file order. */
struct cmx_config_diag {
    struct cmx_buf text; /* the lines, each ending in '\n' */
    int errors;          /* number of error lines */
    int warnings;        /* number of warning lines */
};

/* Prepares an empty diag (the text is capped at 1 MiB). Never fails. */
void cmx_config_diag_init(struct cmx_config_diag *d);

/* Frees the text; the diag is empty and reusable afterwards. */
void cmx_config_diag_free(struct cmx_config_diag *d);

/* Loads and validates the YAML file at path. Expands ${VAR} and ${VAR:-default} from the
 * environment inside scalar values (a missing variable without a default is an error
 * naming the variable and the line). On success returns 0 and *out with refcount 1; on
 * failure returns CMX_ECONFIG (or CMX_EIO / CMX_ENOMEM) and fills diag; *out is NULL.
 * Warnings may be reported on success. Thread: any.
 *
 * Details: lines are appended to diag (never reset; diag may be NULL to discard them).
 * An I/O failure is reported as "FILE: error: cannot read: REASON". Expansion applies to
 * values, not keys; "$${" stands for a literal "${"; ${VAR:-default} uses the default when
 * VAR is unset or empty (as sh does); the default is literal text up to the first '}'.
 * Messages quote values as written in the file, never after expansion, and never quote
 * api_key at all. YAML anchors and aliases are followed; merge keys ("<<") are not
 * supported. Exactly one YAML document; an empty file is an error. The text must be
 * UTF-8 without control characters, with tabs only on comment lines (this also keeps
 * away inputs that crash or hang Debian's libfyaml 0.7.12). */
int cmx_config_load(const char *path, struct cmx_config **out, struct cmx_config_diag *diag);

/* Same, from a YAML text in memory (len bytes, no NUL needed); name is used in
 * diagnostics and as cfg->path instead of a path (NULL: "<string>"). */
int cmx_config_load_string(const char *yaml, size_t len, const char *name, struct cmx_config **out,
                           struct cmx_config_diag *diag);

/* Takes one more reference. Thread-safe. Returns cfg. */
struct cmx_config *cmx_config_ref(struct cmx_config *cfg);

/* Drops one reference; frees the snapshot when it was the last. NULL is ignored. */
void cmx_config_unref(struct cmx_config *cfg);

/* Looks a public model name up (exact, case-sensitive; name need not be NUL-terminated).
 * NULL when unknown. O(log n), no allocation; thread-safe on a shared snapshot. */
const struct cmx_model_cfg *cmx_config_find_model(const struct cmx_config *cfg, const char *name,
                                                  size_t len);

/* Looks a tenant up by name (NUL-terminated). NULL when unknown. O(n): tenants are few and
 * looked up when a key is resolved, not per deployment. */
const struct cmx_tenant_cfg *cmx_config_find_tenant(const struct cmx_config *cfg, const char *name);

/* Looks a provider up by name (NUL-terminated). NULL when unknown. O(log n). */
const struct cmx_provider_cfg *cmx_config_find_provider(const struct cmx_config *cfg,
                                                        const char *name);

/* Returns the type's config name ("openai", "azure_openai", "openai_compatible",
 * "anthropic", "vertex"). */
const char *cmx_provider_type_name(enum cmx_provider_type t);

#endif
