/* Providers: one file per wire format behind one ops struct (h2o's balancer, curl's vtls).
 * A provider turns the client's OpenAI request into its upstream request, and turns the
 * upstream's answer back into OpenAI's shapes: whole bodies, stream events and errors.
 * Everything runs on the worker thread; memory comes from the request's arena. */
#ifndef CMX_PROVIDERS_PROVIDER_H
#define CMX_PROVIDERS_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/json_scan.h"
#include "http/http.h"
#include "upstream/upstream.h"

enum cmx_endpoint {
    CMX_EP_CHAT,       /* POST /v1/chat/completions */
    CMX_EP_EMBEDDINGS, /* POST /v1/embeddings */
};

#define CMX_MAX_MEMBERS 256

/* The client's request, parsed once and shared by every attempt. */
struct cmx_client_req {
    enum cmx_endpoint ep; /* which API */
    const char *body;     /* raw JSON body as received */
    size_t body_len;
    struct cmx_json_member *members; /* its top-level members */
    size_t n_members;
    char *model;            /* decoded "model" (public name) */
    bool stream;            /* "stream": true */
    bool include_usage;     /* the client itself asked for the usage chunk */
    const char *request_id; /* x-request-id sent upstream */
};

/* One upstream request, as built by a provider. */
struct cmx_provider_req {
    const char *method;      /* "POST" */
    char *url;               /* absolute URL */
    const char *headers[16]; /* "Name: value" lines */
    size_t n_headers;
    const char *body; /* request body */
    size_t body_len;
};

/* Token counts as the upstream reported them (OpenAI's meaning). -1 = not reported. */
struct cmx_usage {
    int64_t prompt_tokens;     /* includes cached tokens */
    int64_t completion_tokens; /* includes reasoning tokens */
    int64_t cached_tokens;     /* prompt tokens served from cache */
    int64_t reasoning_tokens;  /* completion tokens spent on reasoning */
    bool reported;             /* the upstream sent usage */
};

/* Called by a stream decoder for each OpenAI chat.completion.chunk payload (JSON text) it
 * produces, or "[DONE]". Returns non-zero to stop. */
typedef int (*cmx_chunk_cb)(void *ud, const char *json, size_t len);

/* An OpenAI-shaped error extracted from an upstream's error answer. Strings live in the
 * arena; they may contain secrets and must go through redaction before reaching a client. */
struct cmx_upstream_error {
    const char *message;
    const char *type;  /* NULL -> derived from the status */
    const char *code;  /* NULL -> null */
    const char *param; /* NULL -> null */
    /* issue 7: retry hints carried in the body (the memset to 0 means "none") */
    int64_t retry_after_ms; /* > 0: the body asked for this delay (google.rpc.RetryInfo) */
    bool no_retry;          /* the body says retrying cannot help (spend limit reached) */
    int status;             /* > 0: the status this error means, when the upstream's own
                             * disagrees (Bedrock's quota errors come as 400: 429) */
};

/* One part's successful answer (fan-out). */
struct cmx_part_answer {
    const char *body; /* whole body */
    size_t len;
    const struct cmx_http_header *headers; /* response headers (arena copies) */
    size_t n_headers;
};

/* What an asynchronous prepare step may use: the worker's loop and upstream client. */
struct cmx_prepare_env {
    uv_loop_t *loop;                       /* the worker's loop */
    const struct cmx_upstream_ops *up_ops; /* its upstream client */
    struct cmx_upstream *up;
};

/* Called once when a pending prepare step ends: err 0 (build may run now) or an error
 * (the attempt fails as a transport failure with it). On the worker thread. */
typedef void (*cmx_prepare_done_cb)(void *ud, int err);

struct cmx_provider_ops {
    const char *name; /* config type name */

    /* Optional (NULL: build runs at once). Runs before build for each attempt, e.g. to
     * obtain an access token. Returns 0 when build may run now, 1 when done(ud, err) will
     * be called later on this thread (exactly once, unless prepare_cancel(*pending) is
     * called first: then never), or an error for the attempt. */
    int (*prepare)(const struct cmx_deployment_cfg *d, const struct cmx_prepare_env *env,
                   cmx_prepare_done_cb done, void *ud, void **pending);
    /* Cancels a pending prepare step (required when prepare is set). */
    void (*prepare_cancel)(void *pending);

    /* Builds the upstream request for one attempt at deployment d. Returns 0, or
     * CMX_EINVAL with *why set (an arena string for a 400 to the client). */
    int (*build)(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, struct cmx_provider_req *out, const char **why);

    /* Creates a stream decoder for one attempt; NULL on allocation failure. */
    void *(*stream_new)(struct cmx_arena *a, const struct cmx_deployment_cfg *d);
    /* Feeds upstream body bytes; emits OpenAI chunks. 0, a cb return, or an error. */
    int (*stream_feed)(void *st, const char *data, size_t len, cmx_chunk_cb cb, void *ud);
    /* At the end of the upstream body. Same returns. */
    int (*stream_finish)(void *st, cmx_chunk_cb cb, void *ud);
    /* Releases what stream_new allocated outside the arena. */
    void (*stream_free)(void *st);

    /* Turns a whole successful upstream body into an OpenAI body in out; NULL ops member
     * means the body already is one and is relayed as is. 0 or an error. */
    int (*translate)(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                     const char *body, size_t len, struct cmx_arena *a, struct cmx_buf *out);

    /* Extracts an error from a non-2xx upstream answer. Never fails: falls back to a
     * generic message. */
    void (*parse_error)(int status, const struct cmx_http_header *h, size_t nh, const char *body,
                        size_t len, struct cmx_arena *a, struct cmx_upstream_error *out);

    /* ---- optional fan-out (NULL members: one upstream request per attempt) ----
     * For upstreams that take less per call than the client sends (Bedrock's Titan embeds
     * one input per InvokeModel): one attempt becomes n part requests, all sent to the same
     * deployment (src/api/fanout.c), and their answers are joined in order. */

    /* How many parts this request needs at d: *n = 0 means a plain attempt (build and
     * translate). *state (arena) is handed to build_part and assemble. 0, or CMX_EINVAL
     * with *why set (a 400 for the client). */
    int (*parts)(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, size_t *n, void **state, const char **why);
    /* Builds part i of n, like build. */
    int (*build_part)(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                      void *state, size_t i, struct cmx_arena *a, struct cmx_provider_req *out,
                      const char **why);
    /* Joins the n successful part answers (in part order) into one OpenAI body in out. 0 or
     * an error (the attempt then fails as an upstream protocol error). */
    int (*assemble)(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                    void *state, const struct cmx_part_answer *parts, size_t n, struct cmx_arena *a,
                    struct cmx_buf *out);
};

/* The ops for a provider type. Never NULL for a valid type. */
const struct cmx_provider_ops *cmx_provider_ops_for(enum cmx_provider_type type);

extern const struct cmx_provider_ops cmx_provider_openai;
extern const struct cmx_provider_ops cmx_provider_openai_compatible;
extern const struct cmx_provider_ops cmx_provider_azure_openai;
extern const struct cmx_provider_ops cmx_provider_bedrock;
extern const struct cmx_provider_ops cmx_provider_anthropic; /* issue 7 */
extern const struct cmx_provider_ops cmx_provider_vertex;    /* issue 7 */

/* ---- helpers for providers that speak OpenAI's wire format (src/providers/openai_wire.c) */

/* Rewrites the client's body for an OpenAI-format upstream: "model" becomes model (when
 * model is not NULL), and a streaming request always asks for usage
 * (stream_options.include_usage = true). Every other byte is kept. 0 or CMX_ENOMEM. */
int cmx_openai_rewrite_body(const struct cmx_client_req *cr, const char *model, struct cmx_arena *a,
                            const char **body, size_t *len);

/* Fills out->headers with Content-Type, "<auth_prefix><key>" (when key is set) and
 * "<id_header>: <request id>" (when there is one). 0 or CMX_ENOMEM. */
int cmx_openai_headers(struct cmx_provider_req *out, const struct cmx_client_req *cr,
                       struct cmx_arena *a, const char *auth_prefix, const char *key,
                       const char *id_header);

/* SSE decoder passing each event's data through as a chunk. */
void *cmx_openai_stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d);
int cmx_openai_stream_feed(void *st, const char *data, size_t len, cmx_chunk_cb cb, void *ud);
int cmx_openai_stream_finish(void *st, cmx_chunk_cb cb, void *ud);
void cmx_openai_stream_free(void *st);

/* Reads {"error":{message,type,code,param}} (also Azure's variants) from body. */
void cmx_openai_parse_error(int status, const struct cmx_http_header *h, size_t nh,
                            const char *body, size_t len, struct cmx_arena *a,
                            struct cmx_upstream_error *out);

/* More tokens than any one request can use: a usage report above it is corrupt. */
#define CMX_USAGE_MAX_TOKENS 1000000000

/* Parses an OpenAI "usage" object's text into u (absent or negative counts are -1; u->reported
 * is false when neither prompt nor completion tokens are given, or when a count exceeds
 * CMX_USAGE_MAX_TOKENS). 0 or CMX_EJSON. */
int cmx_usage_parse(const char *json, size_t len, struct cmx_usage *u);

/* What cmx_openai_chunk_filter() decided for one chunk. */
struct cmx_chunk_result {
    const char *data; /* text to send: the input itself or the scratch buffer */
    size_t len;
    bool drop;           /* send nothing (the usage-only chunk the client did not ask for) */
    bool done;           /* it was the [DONE] sentinel (not to be sent: the caller ends) */
    bool error;          /* it was an in-band error event */
    bool invalid;        /* not a JSON object (invalid JSON or another value): passed untouched */
    const char *choices; /* raw "choices" value (points into the input), NULL when absent */
    size_t choices_len;
};

/* Inspects one OpenAI chat.completion.chunk (or a whole chat.completion when object is
 * "chat.completion"): records usage into *u when present, removes "usage" when keep_usage
 * is false (dropping a chunk that only carries usage), and fills in a missing id
 * ("chatcmpl-" + fallback_id), object and created. Text that is not a JSON object passes
 * untouched (res->invalid). scratch receives rewritten text. 0 or CMX_ENOMEM. */
int cmx_openai_chunk_filter(const char *json, size_t len, bool keep_usage, const char *object,
                            const char *fallback_id, uint64_t created, struct cmx_usage *u,
                            struct cmx_buf *scratch, struct cmx_chunk_result *res);

/* Re-emits a whole chat.completion (json[0..len)) as the chunks of the stream a client asked
 * for, through cb: per choice one chunk whose delta is the message (tool calls given their
 * index) with its finish_reason, then a usage chunk when the answer has usage. For servers
 * that ignore "stream": true. 0, cb's non-zero value, CMX_EUPSTREAM when json is not a
 * chat.completion, or CMX_ENOMEM. */
int cmx_openai_completion_as_stream(const char *json, size_t len, cmx_chunk_cb cb, void *ud);

/* Bytes of generated text in the raw JSON text s[0..len) of an OpenAI "choices" array (or
 * any valid JSON value): the string values of "content", "reasoning_content", "reasoning",
 * "refusal" and "arguments" members at any depth, as written (escapes undecoded). A stream's deltas
 * or a whole answer's messages; estimates tokens when an upstream reports no usage (a stream that
 * ended early, a server that never counts). s must be valid JSON. Thread: any. */
size_t cmx_openai_text_bytes(const char *s, size_t len);

/* Joins base and path with exactly one '/' into an arena string. */
char *cmx_url_join(struct cmx_arena *a, const char *base, const char *path);

#endif
