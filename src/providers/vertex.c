/* Google Vertex AI, Gemini models (type: vertex):
 *   POST
 * {base}/v1/projects/{project}/locations/{region}/publishers/google/models/{m}:generateContent
 *   (:streamGenerateContent?alt=sse when streaming, :predict for embeddings)
 * with "Authorization: Bearer <token>": a configured access_token, or one obtained from a
 * service-account key by the prepare step (src/auth/gcp_token.c). {base} is the endpoint
 * override or https://{region}-aiplatform.googleapis.com (https://aiplatform.googleapis.com
 * for region global). */
#include "providers/provider.h"
#include "providers/translate_int.h"
#include "auth/gcp_token.h"
#include "auth/jws.h"
#include "codec/sse.h"
#include "core/err.h"
#include "core/hash.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Between a tool call's id and the thoughtSignature it carries (tool_call_of). */
#define THOUGHT_SEP "__thought__"

#define MAX_STREAM_EVENT (8u << 20)

/* ---- auth ------------------------------------------------------------------------------ */

static int prepare(const struct cmx_deployment_cfg *d, const struct cmx_prepare_env *env,
                   cmx_prepare_done_cb done, void *ud, void **pending)
{
    const struct cmx_provider_cfg *p = d->provider;
    if (p->credentials_file == NULL)
        return 0; /* a fixed access_token */
    return cmx_gcp_token_acquire(p->credentials_file, env, done, ud, pending);
}

static void prepare_cancel(void *pending)
{
    cmx_gcp_token_cancel(pending);
}

/* ---- request --------------------------------------------------------------------------- */

static json_object *text_part(const char *t)
{
    json_object *p = json_object_new_object();
    json_object_object_add(p, "text", json_object_new_string(t));
    return p;
}

static void push_part(json_object *contents, const char *role, json_object *part)
{
    size_t n = json_object_array_length(contents);
    json_object *last = n ? json_object_array_get_idx(contents, n - 1) : NULL;
    const char *lr = cmx_tr_str(last, "role");
    if (last == NULL || lr == NULL || strcmp(lr, role) != 0) {
        last = json_object_new_object();
        json_object_object_add(last, "role", json_object_new_string(role));
        json_object_object_add(last, "parts", json_object_new_array());
        json_object_array_add(contents, last);
    }
    json_object_array_add(cmx_tr_get(last, "parts"), part);
}

/* A mime type guessed from a URL's extension (fileData needs one). */
static const char *mime_of_url(const char *url)
{
    static const char *const map[][2] = {{".png", "image/png"},
                                         {".gif", "image/gif"},
                                         {".webp", "image/webp"},
                                         {".pdf", "application/pdf"},
                                         {".heic", "image/heic"}};
    const char *q = strchr(url, '?');
    size_t n = q ? (size_t)(q - url) : strlen(url);
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        size_t el = strlen(map[i][0]);
        if (n >= el && strncasecmp(url + n - el, map[i][0], el) == 0)
            return map[i][1];
    }
    return "image/jpeg";
}

static int add_content(json_object *contents, const char *role, json_object *content,
                       struct cmx_arena *a, const char **why)
{
    if (content == NULL || json_object_is_type(content, json_type_null))
        return 0;
    if (json_object_is_type(content, json_type_string)) {
        if (json_object_get_string_len(content) > 0)
            push_part(contents, role, text_part(json_object_get_string(content)));
        return 0;
    }
    if (!json_object_is_type(content, json_type_array)) {
        *why = "A message's content must be a string or an array of parts.";
        return CMX_EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *part = json_object_array_get_idx(content, i);
        const char *type = cmx_tr_str(part, "type");
        if (type != NULL && strcmp(type, "text") == 0 && cmx_tr_str(part, "text") != NULL) {
            /* an empty text part is dropped, like an empty string content */
            if (cmx_tr_str(part, "text")[0] != '\0')
                push_part(contents, role, text_part(cmx_tr_str(part, "text")));
        } else if (type != NULL && strcmp(type, "image_url") == 0) {
            json_object *iu = cmx_tr_get(part, "image_url");
            const char *url = iu && json_object_is_type(iu, json_type_string)
                                  ? json_object_get_string(iu)
                                  : cmx_tr_str(iu, "url");
            if (url == NULL) {
                *why = "An image_url part has no url.";
                return CMX_EINVAL;
            }
            char *mime, *data;
            json_object *p = json_object_new_object(), *inner = json_object_new_object();
            if (cmx_tr_data_url(url, a, &mime, &data)) {
                json_object_object_add(inner, "mimeType", json_object_new_string(mime));
                json_object_object_add(inner, "data", json_object_new_string(data));
                json_object_object_add(p, "inlineData", inner);
            } else {
                json_object_object_add(inner, "mimeType", json_object_new_string(mime_of_url(url)));
                json_object_object_add(inner, "fileUri", json_object_new_string(url));
                json_object_object_add(p, "fileData", inner);
            }
            push_part(contents, role, p);
        } else {
            *why = "This provider accepts only text and image_url content parts.";
            return CMX_EINVAL;
        }
    }
    return 0;
}

/* The function name of the tool call with this id in the earlier assistant messages. */
static const char *call_name(json_object *msgs, size_t before, const char *id)
{
    for (size_t i = before; i-- > 0;) {
        json_object *tcs = cmx_tr_get(json_object_array_get_idx(msgs, i), "tool_calls");
        if (tcs == NULL || !json_object_is_type(tcs, json_type_array))
            continue;
        for (size_t k = 0; k < json_object_array_length(tcs); k++) {
            json_object *tc = json_object_array_get_idx(tcs, k);
            const char *tid = cmx_tr_str(tc, "id");
            if (tid != NULL && strcmp(tid, id) == 0)
                return cmx_tr_str(cmx_tr_get(tc, "function"), "name");
        }
    }
    return NULL;
}

static void copy_member(json_object *in, const char *from, json_object *out, const char *to)
{
    json_object *v = cmx_tr_get(in, from);
    if (v != NULL && !json_object_is_type(v, json_type_null))
        json_object_object_add(out, to, json_object_get(v));
}

static int chat_request(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                        json_object *in, json_object *out, struct cmx_arena *a, const char **why)
{
    json_object *msgs = cmx_tr_get(in, "messages");
    if (msgs == NULL || !json_object_is_type(msgs, json_type_array)) {
        *why = "'messages' must be an array.";
        return CMX_EINVAL;
    }
    json_object *contents = json_object_new_array();
    json_object_object_add(out, "contents", contents);
    json_object *sys = NULL;
    for (size_t i = 0; i < json_object_array_length(msgs); i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        const char *role = cmx_tr_str(m, "role");
        json_object *content = cmx_tr_get(m, "content");
        int rc = 0;
        if (role == NULL) {
            *why = "Every message needs a role.";
            return CMX_EINVAL;
        } else if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            char *t = cmx_tr_content_text(content, a, "\n");
            if (t != NULL) {
                if (sys == NULL) {
                    sys = json_object_new_object();
                    json_object_object_add(sys, "parts", json_object_new_array());
                    json_object_object_add(out, "systemInstruction", sys);
                }
                json_object_array_add(cmx_tr_get(sys, "parts"), text_part(t));
            }
        } else if (strcmp(role, "user") == 0) {
            rc = add_content(contents, "user", content, a, why);
        } else if (strcmp(role, "assistant") == 0) {
            rc = add_content(contents, "model", content, a, why);
            json_object *tcs = cmx_tr_get(m, "tool_calls");
            for (size_t k = 0; rc == 0 && tcs && json_object_is_type(tcs, json_type_array) &&
                               k < json_object_array_length(tcs);
                 k++) {
                json_object *fn = cmx_tr_get(json_object_array_get_idx(tcs, k), "function");
                const char *name = cmx_tr_str(fn, "name"), *args = cmx_tr_str(fn, "arguments");
                if (name == NULL) {
                    *why = "A tool call needs a function name.";
                    return CMX_EINVAL;
                }
                json_object *argo =
                    args && *args ? cmx_tr_parse_raw(args, strlen(args)) : json_object_new_object();
                if (argo == NULL || !json_object_is_type(argo, json_type_object)) {
                    json_object_put(argo);
                    *why = "A tool call's arguments must be a JSON object.";
                    return CMX_EINVAL;
                }
                json_object *fc = json_object_new_object(), *p = json_object_new_object();
                json_object_object_add(fc, "name", json_object_new_string(name));
                json_object_object_add(fc, "args", argo);
                json_object_object_add(p, "functionCall", fc);
                /* the signature Gemini gave this call, carried in its id (tool_call_of) */
                const char *tid = cmx_tr_str(json_object_array_get_idx(tcs, k), "id");
                const char *sig = tid != NULL ? strstr(tid, THOUGHT_SEP) : NULL;
                if (sig != NULL && sig[sizeof(THOUGHT_SEP) - 1] != '\0')
                    json_object_object_add(p, "thoughtSignature",
                                           json_object_new_string(sig + sizeof(THOUGHT_SEP) - 1));
                push_part(contents, "model", p);
            }
        } else if (strcmp(role, "tool") == 0) {
            const char *id = cmx_tr_str(m, "tool_call_id");
            const char *name = id ? call_name(msgs, i, id) : NULL;
            if (name == NULL) {
                *why = "A tool message's tool_call_id matches no earlier assistant tool call.";
                return CMX_EINVAL;
            }
            char *t = cmx_tr_content_text(content, a, "\n");
            json_object *resp = t ? cmx_tr_parse_raw(t, strlen(t)) : NULL;
            if (resp == NULL || !json_object_is_type(resp, json_type_object)) {
                /* the response must be an object: wrap anything else */
                json_object_put(resp);
                resp = json_object_new_object();
                json_object_object_add(resp, "content", json_object_new_string(t ? t : ""));
            }
            json_object *fr = json_object_new_object(), *p = json_object_new_object();
            json_object_object_add(fr, "name", json_object_new_string(name));
            json_object_object_add(fr, "response", resp);
            json_object_object_add(p, "functionResponse", fr);
            push_part(contents, "user", p);
        } else {
            *why = "Unknown message role.";
            return CMX_EINVAL;
        }
        if (rc != 0)
            return rc;
    }
    if (json_object_array_length(contents) == 0) {
        *why = "At least one user or assistant message is required.";
        return CMX_EINVAL;
    }

    json_object *tools = cmx_tr_get(in, "tools");
    if (tools != NULL && json_object_is_type(tools, json_type_array) &&
        json_object_array_length(tools) > 0) {
        json_object *decls = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(tools); i++) {
            json_object *fn = cmx_tr_get(json_object_array_get_idx(tools, i), "function");
            const char *name = cmx_tr_str(fn, "name");
            if (name == NULL) {
                json_object_put(decls);
                *why = "Every tool needs function.name.";
                return CMX_EINVAL;
            }
            json_object *fd = json_object_new_object();
            json_object_object_add(fd, "name", json_object_new_string(name));
            copy_member(fn, "description", fd, "description");
            copy_member(fn, "parameters", fd, "parametersJsonSchema");
            json_object_array_add(decls, fd);
        }
        json_object *t = json_object_new_object(), *arr = json_object_new_array();
        json_object_object_add(t, "functionDeclarations", decls);
        json_object_array_add(arr, t);
        json_object_object_add(out, "tools", arr);
    }
    json_object *tc = cmx_tr_get(in, "tool_choice");
    if (tc != NULL && !json_object_is_type(tc, json_type_null)) {
        json_object *fcc = json_object_new_object();
        const char *mode = "AUTO";
        if (json_object_is_type(tc, json_type_string)) {
            const char *s = json_object_get_string(tc);
            mode = strcmp(s, "required") == 0 ? "ANY" : strcmp(s, "none") == 0 ? "NONE" : "AUTO";
        } else {
            const char *name = cmx_tr_str(cmx_tr_get(tc, "function"), "name");
            if (name != NULL) {
                mode = "ANY";
                json_object *names = json_object_new_array();
                json_object_array_add(names, json_object_new_string(name));
                json_object_object_add(fcc, "allowedFunctionNames", names);
            }
        }
        json_object_object_add(fcc, "mode", json_object_new_string(mode));
        json_object *tcfg = json_object_new_object();
        json_object_object_add(tcfg, "functionCallingConfig", fcc);
        json_object_object_add(out, "toolConfig", tcfg);
    }

    json_object *lp = cmx_tr_get(in, "logprobs");
    if (lp != NULL && json_object_is_type(lp, json_type_boolean) && json_object_get_boolean(lp)) {
        *why = "This gateway does not translate Gemini's log probabilities: 'logprobs' is not "
               "supported on Vertex deployments.";
        return CMX_EINVAL;
    }
    json_object *gc = json_object_new_object();
    copy_member(in, "temperature", gc, "temperature");
    copy_member(in, "top_p", gc, "topP");
    copy_member(in, "n", gc, "candidateCount");
    copy_member(in, "presence_penalty", gc, "presencePenalty");
    copy_member(in, "frequency_penalty", gc, "frequencyPenalty");
    json_object *seed = cmx_tr_get(in, "seed");
    if (seed != NULL && json_object_is_type(seed, json_type_int)) {
        /* OpenAI's seed is 64-bit, Gemini's int32: the low 32 bits, so that equal seeds
         * stay equal (and a seed that fits is sent as is) */
        int64_t sv = json_object_get_int64(seed);
        json_object_object_add(gc, "seed", json_object_new_int((int32_t)(uint32_t)(uint64_t)sv));
    }
    json_object *mt = cmx_tr_get(in, "max_completion_tokens");
    copy_member(in,
                mt != NULL && !json_object_is_type(mt, json_type_null) ? "max_completion_tokens"
                                                                       : "max_tokens",
                gc, "maxOutputTokens");
    json_object *stop = cmx_tr_get(in, "stop");
    if (stop != NULL && json_object_is_type(stop, json_type_string)) {
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, json_object_get(stop));
        json_object_object_add(gc, "stopSequences", arr);
    } else if (stop != NULL && json_object_is_type(stop, json_type_array)) {
        json_object_object_add(gc, "stopSequences", json_object_get(stop));
    }
    json_object *rf = cmx_tr_get(in, "response_format");
    const char *rft = cmx_tr_str(rf, "type");
    if (rft != NULL && strcmp(rft, "json_object") == 0) {
        json_object_object_add(gc, "responseMimeType", json_object_new_string("application/json"));
    } else if (rft != NULL && strcmp(rft, "json_schema") == 0) {
        json_object_object_add(gc, "responseMimeType", json_object_new_string("application/json"));
        copy_member(cmx_tr_get(rf, "json_schema"), "schema", gc, "responseJsonSchema");
    }
    const char *effort = cmx_tr_str(in, "reasoning_effort");
    if (effort != NULL) {
        json_object *th = json_object_new_object();
        int budget = strcmp(effort, "minimal") == 0 || strcmp(effort, "none") == 0 ? 0
                     : strcmp(effort, "low") == 0                                  ? 1024
                     : strcmp(effort, "high") == 0                                 ? 24576
                                                                                   : 8192;
        json_object_object_add(th, "thinkingBudget", json_object_new_int(budget));
        json_object_object_add(gc, "thinkingConfig", th);
    }
    if (json_object_object_length(gc) > 0)
        json_object_object_add(out, "generationConfig", gc);
    else
        json_object_put(gc);
    (void)d;
    (void)cr;
    return 0;
}

static int embed_request(json_object *in, json_object *out, const char **why)
{
    json_object *input = cmx_tr_get(in, "input");
    json_object *inst = json_object_new_array();
    json_object_object_add(out, "instances", inst);
    if (input != NULL && json_object_is_type(input, json_type_string)) {
        json_object *i = json_object_new_object();
        json_object_object_add(i, "content", json_object_get(input));
        json_object_array_add(inst, i);
    } else if (input != NULL && json_object_is_type(input, json_type_array) &&
               json_object_array_length(input) > 0) {
        for (size_t k = 0; k < json_object_array_length(input); k++) {
            json_object *s = json_object_array_get_idx(input, k);
            if (!json_object_is_type(s, json_type_string)) {
                *why = "This provider embeds text only: 'input' must be a string or an array "
                       "of strings.";
                return CMX_EINVAL;
            }
            json_object *i = json_object_new_object();
            json_object_object_add(i, "content", json_object_get(s));
            json_object_array_add(inst, i);
        }
    } else {
        *why = "'input' must be a non-empty string or array of strings.";
        return CMX_EINVAL;
    }
    json_object *dims = cmx_tr_get(in, "dimensions");
    if (dims != NULL && json_object_is_type(dims, json_type_int)) {
        json_object *params = json_object_new_object();
        json_object_object_add(params, "outputDimensionality", json_object_get(dims));
        json_object_object_add(out, "parameters", params);
    }
    return 0;
}

/* Percent-encodes s as one path segment (':' kept out: it starts the method). */
static char *segment(struct cmx_arena *a, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = cmx_arena_alloc(a, n * 3 + 1), *w = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '@' || c == '/') {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w = '\0';
    return out;
}

static int build(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                 struct cmx_arena *a, struct cmx_provider_req *out, const char **why)
{
    const struct cmx_provider_cfg *p = d->provider;
    json_object *in = cmx_tr_parse(a, cr->body, cr->body_len);
    json_object *body = json_object_new_object();
    if (in == NULL || cmx_tr_own(a, body) != 0)
        return CMX_ENOMEM;
    int r = cr->ep == CMX_EP_CHAT ? chat_request(d, cr, in, body, a, why)
                                  : embed_request(in, body, why);
    if (r != 0)
        return r;
    /* a deployment may name a full resource (publishers/meta/models/x, or projects/...) */
    char *model = segment(a, d->model);
    const char *method = cr->ep == CMX_EP_EMBEDDINGS ? "predict"
                         : cr->stream                ? "streamGenerateContent?alt=sse"
                                                     : "generateContent";
    if (model == NULL)
        return CMX_ENOMEM;
    char *path;
    if (strncmp(d->model, "projects/", 9) == 0)
        path = cmx_arena_printf(a, "v1/%s:%s", model, method);
    else if (strchr(d->model, '/') != NULL)
        path = cmx_arena_printf(a, "v1/projects/%s/locations/%s/%s:%s", p->project, p->region,
                                model, method);
    else
        path = cmx_arena_printf(a, "v1/projects/%s/locations/%s/publishers/google/models/%s:%s",
                                p->project, p->region, model, method);
    out->method = "POST";
    out->url = path ? cmx_url_join(a, p->base_url, path) : NULL;
    out->body = cmx_tr_dump(body, a, &out->body_len);
    if (out->url == NULL || out->body == NULL)
        return CMX_ENOMEM;
    const char *token = p->access_token;
    if (token == NULL && p->credentials_file != NULL)
        token = cmx_gcp_token_copy(p->credentials_file, a);
    if (token == NULL) {
        *why = NULL;
        return CMX_EUPSTREAM; /* the prepare step did not leave a token */
    }
    if (cmx_openai_headers(out, cr, a, "Authorization: Bearer ", token, "X-Client-Request-Id") != 0)
        return CMX_ENOMEM;
    return 0;
}

/* ---- answers --------------------------------------------------------------------------- */

const char *cmx_vertex_finish_reason(const char *reason, bool had_call);

/* Maps a Gemini finishReason to OpenAI's finish_reason. */
const char *cmx_vertex_finish_reason(const char *r, bool had_call)
{
    if (r == NULL || strcmp(r, "STOP") == 0 || strcmp(r, "FINISH_REASON_UNSPECIFIED") == 0)
        return had_call ? "tool_calls" : "stop";
    if (strcmp(r, "MAX_TOKENS") == 0)
        return "length";
    if (strcmp(r, "SAFETY") == 0 || strcmp(r, "RECITATION") == 0 || strcmp(r, "BLOCKLIST") == 0 ||
        strcmp(r, "PROHIBITED_CONTENT") == 0 || strcmp(r, "SPII") == 0 ||
        strcmp(r, "IMAGE_SAFETY") == 0 || strcmp(r, "LANGUAGE") == 0)
        return "content_filter";
    if (strcmp(r, "MALFORMED_FUNCTION_CALL") == 0 || strcmp(r, "UNEXPECTED_TOOL_CALL") == 0)
        return had_call ? "tool_calls" : "stop";
    return "stop";
}

/* Token counts beyond this are nonsense; capping keeps their sums from overflowing. */
#define MAX_COUNT INT64_C(1000000000000000)

static int64_t int_of_raw(json_object *o, const char *k);

static int64_t int_of(json_object *o, const char *k)
{
    int64_t v = int_of_raw(o, k);
    return v > MAX_COUNT ? MAX_COUNT : v;
}

static int64_t int_of_raw(json_object *o, const char *k)
{
    json_object *v = cmx_tr_get(o, k);
    if (v == NULL)
        return -1;
    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v);
    if (json_object_is_type(v, json_type_string)) /* proto3 JSON int64 */
        return strtoll(json_object_get_string(v), NULL, 10);
    return -1;
}

/* usageMetadata -> usage (completion includes thoughts). */
static void read_usage(json_object *um, struct cmx_usage *u)
{
    int64_t prompt = int_of(um, "promptTokenCount"), cand = int_of(um, "candidatesTokenCount");
    int64_t thoughts = int_of(um, "thoughtsTokenCount"),
            cached = int_of(um, "cachedContentTokenCount");
    if (prompt < 0 && cand < 0)
        return;
    u->prompt_tokens = prompt > 0 ? prompt : 0;
    u->completion_tokens = (cand > 0 ? cand : 0) + (thoughts > 0 ? thoughts : 0);
    u->reasoning_tokens = thoughts > 0 ? thoughts : 0;
    u->cached_tokens = cached > 0 ? cached : 0;
    u->reported = true;
}

/* A stable tool-call id: derived from the response id and the call's position, so that
 * the same answer always yields the same ids. */
static void call_id(char *out, size_t cap, const char *response_id, int cand, int n)
{
    const char *rid = response_id ? response_id : "";
    uint64_t h = cmx_fnv1a(CMX_FNV1A_INIT, rid, strlen(rid));
    h = (h ^ (uint64_t)cand) * 1099511628211ull;
    h = (h ^ (uint64_t)n) * 1099511628211ull;
    snprintf(out, cap, "call_%016llx", (unsigned long long)h);
}

/* The tool call of a functionCall part: its id is id, plus THOUGHT_SEP and the part's
 * thoughtSignature when it has one (Gemini 3 wants the signature back on that call in the
 * next turn's history; an OpenAI client keeps only the id, so the id carries it). */
static json_object *tool_call_of(json_object *part, int index, const char *id)
{
    json_object *fc = cmx_tr_get(part, "functionCall");
    json_object *tc = json_object_new_object();
    if (index >= 0)
        json_object_object_add(tc, "index", json_object_new_int(index));
    const char *sig = cmx_tr_str(part, "thoughtSignature");
    json_object *idv = NULL;
    if (sig != NULL && sig[0] != '\0') {
        size_t il = strlen(id), sl = strlen(sig);
        char *full = malloc(il + sizeof(THOUGHT_SEP) - 1 + sl + 1);
        if (full != NULL) {
            memcpy(full, id, il);
            memcpy(full + il, THOUGHT_SEP, sizeof(THOUGHT_SEP) - 1);
            memcpy(full + il + sizeof(THOUGHT_SEP) - 1, sig, sl + 1);
            idv = json_object_new_string(full);
            free(full);
        }
    }
    json_object_object_add(tc, "id", idv != NULL ? idv : json_object_new_string(id));
    json_object_object_add(tc, "type", json_object_new_string("function"));
    json_object *fn = json_object_new_object();
    const char *name = cmx_tr_str(fc, "name");
    json_object_object_add(fn, "name", json_object_new_string(name ? name : ""));
    json_object *args = cmx_tr_get(fc, "args");
    size_t n = 2;
    const char *s = args ? json_object_to_json_string_length(
                               args, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n)
                         : "{}";
    json_object_object_add(fn, "arguments", cmx_tr_strn(s, n));
    json_object_object_add(tc, "function", fn);
    return tc;
}

static int translate_chat(const struct cmx_deployment_cfg *d, json_object *in, struct cmx_buf *out)
{
    json_object *cands = cmx_tr_get(in, "candidates");
    json_object *o = json_object_new_object();
    const char *rid = cmx_tr_str(in, "responseId");
    json_object_object_add(o, "id", json_object_new_string(rid ? rid : "gemini"));
    json_object_object_add(o, "object", json_object_new_string("chat.completion"));
    const char *mv = cmx_tr_str(in, "modelVersion");
    json_object_object_add(o, "model", json_object_new_string(mv ? mv : d->model));
    json_object *choices = json_object_new_array();
    json_object_object_add(o, "choices", choices);
    size_t nc =
        cands && json_object_is_type(cands, json_type_array) ? json_object_array_length(cands) : 0;
    for (size_t i = 0; i < nc; i++) {
        json_object *c = json_object_array_get_idx(cands, i);
        json_object *parts = cmx_tr_get(cmx_tr_get(c, "content"), "parts");
        struct cmx_buf text, thought;
        cmx_buf_init(&text, 64u << 20);
        cmx_buf_init(&thought, 64u << 20);
        json_object *tcs = json_object_new_array();
        bool has_text = false;
        for (size_t k = 0; parts && json_object_is_type(parts, json_type_array) &&
                           k < json_object_array_length(parts);
             k++) {
            json_object *p = json_object_array_get_idx(parts, k);
            json_object *fc = cmx_tr_get(p, "functionCall");
            json_object *th = cmx_tr_get(p, "thought");
            const char *t = cmx_tr_str(p, "text");
            if (fc != NULL) {
                char id[32];
                call_id(id, sizeof(id), rid, (int)i, (int)json_object_array_length(tcs));
                json_object_array_add(tcs, tool_call_of(p, -1, id));
            } else if (t != NULL && th != NULL && json_object_get_boolean(th)) {
                cmx_buf_puts(&thought, t);
            } else if (t != NULL) {
                cmx_buf_puts(&text, t);
                has_text = has_text || t[0] != '\0';
            }
        }
        json_object *msg = json_object_new_object();
        json_object_object_add(msg, "role", json_object_new_string("assistant"));
        json_object_object_add(msg, "content", has_text ? cmx_tr_strn(text.data, text.len) : NULL);
        if (thought.len > 0)
            json_object_object_add(msg, "reasoning_content",
                                   cmx_tr_strn(thought.data, thought.len));
        bool had_call = json_object_array_length(tcs) > 0;
        if (had_call)
            json_object_object_add(msg, "tool_calls", tcs);
        else
            json_object_put(tcs);
        cmx_buf_free(&text);
        cmx_buf_free(&thought);
        json_object *ch = json_object_new_object();
        int64_t idx = int_of(c, "index");
        json_object_object_add(ch, "index", json_object_new_int64(idx >= 0 ? idx : (int64_t)i));
        json_object_object_add(ch, "message", msg);
        json_object_object_add(ch, "finish_reason",
                               json_object_new_string(cmx_vertex_finish_reason(
                                   cmx_tr_str(c, "finishReason"), had_call)));
        json_object_object_add(ch, "logprobs", NULL);
        json_object_array_add(choices, ch);
    }
    if (nc == 0) {
        /* blocked prompt: promptFeedback.blockReason, no candidates */
        json_object *msg = json_object_new_object(), *ch = json_object_new_object();
        json_object_object_add(msg, "role", json_object_new_string("assistant"));
        json_object_object_add(msg, "content", NULL);
        json_object_object_add(ch, "index", json_object_new_int(0));
        json_object_object_add(ch, "message", msg);
        json_object_object_add(ch, "finish_reason", json_object_new_string("content_filter"));
        json_object_array_add(choices, ch);
    }
    struct cmx_usage u = {-1, -1, -1, -1, false};
    read_usage(cmx_tr_get(in, "usageMetadata"), &u);
    if (u.reported)
        cmx_tr_add_usage(o, &u);
    size_t n = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    int r = cmx_buf_append(out, s, n);
    json_object_put(o);
    return r;
}

static int translate_embed(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                           json_object *in, struct cmx_buf *out)
{
    json_object *preds = cmx_tr_get(in, "predictions");
    if (preds == NULL || !json_object_is_type(preds, json_type_array))
        return CMX_EUPSTREAM;
    json_object *req = cmx_tr_parse_raw(cr->body, cr->body_len);
    const char *fmt = cmx_tr_str(req, "encoding_format");
    bool b64 = fmt != NULL && strcmp(fmt, "base64") == 0;
    json_object_put(req);
    json_object *o = json_object_new_object(), *data = json_object_new_array();
    json_object_object_add(o, "object", json_object_new_string("list"));
    json_object_object_add(o, "data", data);
    json_object_object_add(o, "model", json_object_new_string(d->model));
    int64_t tokens = 0;
    int rc = 0;
    for (size_t i = 0; i < json_object_array_length(preds) && rc == 0; i++) {
        json_object *emb = cmx_tr_get(json_object_array_get_idx(preds, i), "embeddings");
        json_object *vals = cmx_tr_get(emb, "values");
        if (vals == NULL || !json_object_is_type(vals, json_type_array)) {
            rc = CMX_EUPSTREAM;
            break;
        }
        int64_t tc = int_of(cmx_tr_get(emb, "statistics"), "token_count");
        if (tc > 0)
            tokens += tc;
        json_object *e = json_object_new_object();
        json_object_object_add(e, "object", json_object_new_string("embedding"));
        json_object_object_add(e, "index", json_object_new_int((int)i));
        if (b64) {
            /* little-endian float32, as OpenAI sends it */
            size_t nv = json_object_array_length(vals);
            unsigned char *raw = malloc(nv * 4 + 1);
            struct cmx_buf enc;
            cmx_buf_init(&enc, 256u << 20);
            if (raw == NULL) {
                rc = CMX_ENOMEM;
                json_object_put(e);
                break;
            }
            for (size_t k = 0; k < nv; k++) {
                float f = (float)json_object_get_double(json_object_array_get_idx(vals, k));
                uint32_t bits;
                memcpy(&bits, &f, 4);
                raw[k * 4] = (unsigned char)bits;
                raw[k * 4 + 1] = (unsigned char)(bits >> 8);
                raw[k * 4 + 2] = (unsigned char)(bits >> 16);
                raw[k * 4 + 3] = (unsigned char)(bits >> 24);
            }
            rc = cmx_b64_encode(&enc, raw, nv * 4);
            free(raw);
            json_object_object_add(e, "embedding", cmx_tr_strn(enc.data ? enc.data : "", enc.len));
            cmx_buf_free(&enc);
        } else {
            json_object_object_add(e, "embedding", json_object_get(vals));
        }
        json_object_array_add(data, e);
    }
    json_object *us = json_object_new_object();
    json_object_object_add(us, "prompt_tokens", json_object_new_int64(tokens));
    json_object_object_add(us, "total_tokens", json_object_new_int64(tokens));
    json_object_object_add(o, "usage", us);
    if (rc == 0) {
        size_t n = 0;
        const char *s = json_object_to_json_string_length(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
        rc = cmx_buf_append(out, s, n);
    }
    json_object_put(o);
    return rc;
}

static int translate(const struct cmx_deployment_cfg *d, const struct cmx_client_req *cr,
                     const char *body, size_t len, struct cmx_arena *a, struct cmx_buf *out)
{
    json_object *in = cmx_tr_parse(a, body, len);
    if (in == NULL || !json_object_is_type(in, json_type_object))
        return CMX_EUPSTREAM;
    return cr->ep == CMX_EP_EMBEDDINGS ? translate_embed(d, cr, in, out)
                                       : translate_chat(d, in, out);
}

/* ---- stream ---------------------------------------------------------------------------- */

#define MAX_CANDS 8

struct vx_stream {
    struct cmx_sse_parser sse;
    cmx_chunk_cb cb;
    void *ud;
    char id[128];              /* responseId */
    char model[128];           /* modelVersion, or the deployment's model */
    bool role_sent[MAX_CANDS]; /* first delta of each candidate went out */
    int n_calls[MAX_CANDS];    /* tool calls emitted per candidate */
    bool finished[MAX_CANDS];  /* finishReason seen per candidate */
    bool any_finish;           /* some candidate finished */
    struct cmx_usage usage;    /* latest (cumulative) usageMetadata */
    bool events;               /* at least one event */
    bool errored;              /* an in-band error went out: nothing follows it */
};

static json_object *vchunk(struct vx_stream *st)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(st->id));
    json_object_object_add(o, "object", json_object_new_string("chat.completion.chunk"));
    json_object_object_add(o, "model", json_object_new_string(st->model));
    return o;
}

static int vx_event(void *ud, const struct cmx_sse_event *ev)
{
    struct vx_stream *st = ud;
    if (ev->data_len == 0 || st->errored)
        return 0;
    json_object *e = cmx_tr_parse_raw(ev->data, ev->data_len);
    if (e == NULL || !json_object_is_type(e, json_type_object)) {
        json_object_put(e);
        return CMX_EUPSTREAM;
    }
    st->events = true;
    int r = 0;
    json_object *err = cmx_tr_get(e, "error");
    if (err != NULL) {
        /* an error object inside the stream: in-band OpenAI error */
        json_object *o = json_object_new_object(), *eo = json_object_new_object();
        const char *msg = cmx_tr_str(err, "message"), *status = cmx_tr_str(err, "status");
        json_object_object_add(eo, "message",
                               json_object_new_string(msg ? msg : "upstream stream error"));
        json_object_object_add(eo, "type", json_object_new_string("server_error"));
        json_object_object_add(eo, "param", NULL);
        json_object_object_add(eo, "code", json_object_new_string(status ? status : "UNKNOWN"));
        json_object_object_add(o, "error", eo);
        json_object_put(e);
        st->errored = true;
        return cmx_tr_emit(o, st->cb, st->ud);
    }
    const char *rid = cmx_tr_str(e, "responseId");
    if (rid != NULL && st->id[0] == '\0')
        cmx_tr_copy(st->id, sizeof(st->id), rid);
    const char *mv = cmx_tr_str(e, "modelVersion");
    if (mv != NULL)
        cmx_tr_copy(st->model, sizeof(st->model), mv);
    json_object *um = cmx_tr_get(e, "usageMetadata");
    if (um != NULL)
        read_usage(um, &st->usage);
    json_object *cands = cmx_tr_get(e, "candidates");
    size_t nc =
        cands && json_object_is_type(cands, json_type_array) ? json_object_array_length(cands) : 0;
    for (size_t i = 0; i < nc && r == 0; i++) {
        json_object *c = json_object_array_get_idx(cands, i);
        int64_t ci = int_of(c, "index");
        if (ci < 0)
            ci = (int64_t)i;
        if (ci >= MAX_CANDS)
            continue;
        json_object *delta = json_object_new_object();
        if (!st->role_sent[ci]) {
            json_object_object_add(delta, "role", json_object_new_string("assistant"));
            st->role_sent[ci] = true;
        }
        json_object *parts = cmx_tr_get(cmx_tr_get(c, "content"), "parts");
        struct cmx_buf text, thought;
        cmx_buf_init(&text, 64u << 20);
        cmx_buf_init(&thought, 64u << 20);
        json_object *tcs = NULL;
        for (size_t k = 0; parts && json_object_is_type(parts, json_type_array) &&
                           k < json_object_array_length(parts);
             k++) {
            json_object *p = json_object_array_get_idx(parts, k);
            json_object *fc = cmx_tr_get(p, "functionCall");
            json_object *th = cmx_tr_get(p, "thought");
            const char *t = cmx_tr_str(p, "text");
            if (fc != NULL && cmx_tr_get(fc, "name") != NULL) {
                char id[32];
                call_id(id, sizeof(id), st->id, (int)ci, st->n_calls[ci]);
                if (tcs == NULL)
                    tcs = json_object_new_array();
                json_object_array_add(tcs, tool_call_of(p, st->n_calls[ci]++, id));
            } else if (t != NULL && th != NULL && json_object_get_boolean(th)) {
                cmx_buf_puts(&thought, t);
            } else if (t != NULL) {
                cmx_buf_puts(&text, t);
            }
        }
        if (text.len > 0)
            json_object_object_add(delta, "content", cmx_tr_strn(text.data, text.len));
        if (thought.len > 0)
            json_object_object_add(delta, "reasoning_content",
                                   cmx_tr_strn(thought.data, thought.len));
        if (tcs != NULL)
            json_object_object_add(delta, "tool_calls", tcs);
        cmx_buf_free(&text);
        cmx_buf_free(&thought);
        const char *fr = cmx_tr_str(c, "finishReason");
        if (json_object_object_length(delta) == 0 && fr == NULL) {
            json_object_put(delta);
            continue;
        }
        json_object *o = vchunk(st), *ch = json_object_new_object(), *arr = json_object_new_array();
        json_object_object_add(ch, "index", json_object_new_int64(ci));
        json_object_object_add(ch, "delta", delta);
        json_object_object_add(
            ch, "finish_reason",
            fr ? json_object_new_string(cmx_vertex_finish_reason(fr, st->n_calls[ci] > 0)) : NULL);
        json_object_array_add(arr, ch);
        json_object_object_add(o, "choices", arr);
        if (fr != NULL) {
            st->finished[ci] = true;
            st->any_finish = true;
        }
        r = cmx_tr_emit(o, st->cb, st->ud);
    }
    if (r == 0 && nc == 0 && cmx_tr_get(cmx_tr_get(e, "promptFeedback"), "blockReason")) {
        json_object *o = vchunk(st), *ch = json_object_new_object(), *arr = json_object_new_array();
        json_object *delta = json_object_new_object();
        json_object_object_add(delta, "role", json_object_new_string("assistant"));
        json_object_object_add(ch, "index", json_object_new_int(0));
        json_object_object_add(ch, "delta", delta);
        json_object_object_add(ch, "finish_reason", json_object_new_string("content_filter"));
        json_object_array_add(arr, ch);
        json_object_object_add(o, "choices", arr);
        st->any_finish = true;
        r = cmx_tr_emit(o, st->cb, st->ud);
    }
    json_object_put(e);
    return r;
}

void *cmx_vertex_stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d);
int cmx_vertex_stream_feed(void *p, const char *data, size_t len, cmx_chunk_cb cb, void *ud);
int cmx_vertex_stream_finish(void *p, cmx_chunk_cb cb, void *ud);
void cmx_vertex_stream_free(void *p);

void *cmx_vertex_stream_new(struct cmx_arena *a, const struct cmx_deployment_cfg *d)
{
    struct vx_stream *st = cmx_arena_calloc(a, sizeof(*st));
    if (st == NULL)
        return NULL;
    cmx_sse_parser_init(&st->sse, MAX_STREAM_EVENT);
    st->usage = (struct cmx_usage){-1, -1, -1, -1, false};
    cmx_tr_copy(st->model, sizeof(st->model), d != NULL ? d->model : "");
    return st;
}

int cmx_vertex_stream_feed(void *p, const char *data, size_t len, cmx_chunk_cb cb, void *ud)
{
    struct vx_stream *st = p;
    st->cb = cb;
    st->ud = ud;
    return cmx_sse_parser_feed(&st->sse, data, len, vx_event, st);
}

/* EOF ends a Gemini stream (there is no [DONE]): one usage chunk from the last, cumulative
 * usageMetadata, then [DONE]. A stream that ends before any finishReason was cut. */
int cmx_vertex_stream_finish(void *p, cmx_chunk_cb cb, void *ud)
{
    struct vx_stream *st = p;
    st->cb = cb;
    st->ud = ud;
    int r = cmx_sse_parser_finish(&st->sse, vx_event, st);
    if (r != 0 || st->errored)
        return r;
    if (!st->any_finish)
        return CMX_EUPSTREAM;
    if (st->usage.reported) {
        json_object *o = vchunk(st);
        json_object_object_add(o, "choices", json_object_new_array());
        cmx_tr_add_usage(o, &st->usage);
        r = cmx_tr_emit(o, cb, ud);
    }
    return r != 0 ? r : cb(ud, "[DONE]", 6);
}

void cmx_vertex_stream_free(void *p)
{
    struct vx_stream *st = p;
    if (st != NULL)
        cmx_sse_parser_free(&st->sse);
}

/* ---- errors ---------------------------------------------------------------------------- */

/* "34.4s" (google.protobuf.Duration in JSON) -> milliseconds, -1 when not one. */
int64_t cmx_vertex_duration_ms(const char *s);

int64_t cmx_vertex_duration_ms(const char *s)
{
    if (s == NULL)
        return -1;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != 's' || end[1] != '\0' || !(v >= 0) || v > 86400.0)
        return -1;
    return (int64_t)(v * 1000.0 + 0.999);
}

static void parse_error(int status, const struct cmx_http_header *h, size_t nh, const char *body,
                        size_t len, struct cmx_arena *a, struct cmx_upstream_error *out)
{
    memset(out, 0, sizeof(*out));
    json_object *o = cmx_tr_parse(a, body, len);
    /* streamGenerateContent without alt=sse answers a JSON array: take its first element */
    if (o != NULL && json_object_is_type(o, json_type_array) && json_object_array_length(o) > 0)
        o = json_object_array_get_idx(o, 0);
    json_object *err = cmx_tr_get(o, "error");
    const char *msg = cmx_tr_str(err, "message");
    if (msg == NULL) {
        cmx_openai_parse_error(status, h, nh, body, len, a, out);
        return;
    }
    out->message = cmx_arena_strndup(a, msg, strlen(msg));
    const char *st = cmx_tr_str(err, "status");
    if (st != NULL) {
        /* RESOURCE_EXHAUSTED -> resource_exhausted: OpenAI's codes are lower-case */
        char *c = cmx_arena_strndup(a, st, strlen(st));
        for (char *q = c; q && *q; q++)
            *q = (char)tolower((unsigned char)*q);
        out->code = c;
    }
    if (status == 400 || status == 404)
        out->type = "invalid_request_error";
    json_object *details = cmx_tr_get(err, "details");
    for (size_t i = 0; details && json_object_is_type(details, json_type_array) &&
                       i < json_object_array_length(details);
         i++) {
        json_object *dd = json_object_array_get_idx(details, i);
        const char *t = cmx_tr_str(dd, "@type");
        if (t != NULL && strstr(t, "google.rpc.RetryInfo") != NULL) {
            int64_t ms = cmx_vertex_duration_ms(cmx_tr_str(dd, "retryDelay"));
            if (ms > 0)
                out->retry_after_ms = ms;
        }
    }
}

const struct cmx_provider_ops cmx_provider_vertex = {
    .name = "vertex",
    .prepare = prepare,
    .prepare_cancel = prepare_cancel,
    .build = build,
    .stream_new = cmx_vertex_stream_new,
    .stream_feed = cmx_vertex_stream_feed,
    .stream_finish = cmx_vertex_stream_finish,
    .stream_free = cmx_vertex_stream_free,
    .translate = translate,
    .parse_error = parse_error,
};
