/* Helpers shared by the providers that translate OpenAI's request and answers to another
 * wire format (anthropic.c, vertex.c). Private to src/providers/. */
#ifndef CMX_PROVIDERS_TRANSLATE_INT_H
#define CMX_PROVIDERS_TRANSLATE_INT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "providers/provider.h"

/* Parses text[0..len) as JSON; the tree is released with the arena. NULL when it is not
 * JSON (or on allocation failure). */
json_object *cmx_tr_parse(struct cmx_arena *a, const char *text, size_t len);

/* Hands o to the arena (released with it). 0 or CMX_ENOMEM (then o was released). */
int cmx_tr_own(struct cmx_arena *a, json_object *o);

/* Parses JSON with no arena (caller puts it). NULL when not JSON. */
json_object *cmx_tr_parse_raw(const char *text, size_t len);

/* o's member k, or NULL (also when o is not an object). */
json_object *cmx_tr_get(json_object *o, const char *k);

/* o's member k as a string, or NULL when absent or not a string. */
const char *cmx_tr_str(json_object *o, const char *k);

/* Serialises o (plain, no slash escapes) into the arena; *len gets its length. NULL on
 * allocation failure. */
char *cmx_tr_dump(json_object *o, struct cmx_arena *a, size_t *len);

/* The text of an OpenAI message content: a string, or the "text" parts of an array joined
 * with sep. NULL when there is none. The string lives in the arena. */
char *cmx_tr_content_text(json_object *content, struct cmx_arena *a, const char *sep);

/* Splits "data:<mime>;base64,<data>" into arena strings. false when url is not one. */
bool cmx_tr_data_url(const char *url, struct cmx_arena *a, char **mime, char **data);

/* Copies s (NULL: "") into dst[cap], cut at a UTF-8 character boundary when too long. */
void cmx_tr_copy(char *dst, size_t cap, const char *s);

/* A new json string from s[0..n). */
json_object *cmx_tr_strn(const char *s, size_t n);

/* Adds usage to o (an OpenAI body or chunk) from u. */
void cmx_tr_add_usage(json_object *o, const struct cmx_usage *u);

/* Emits o (a chat.completion.chunk) through cb, then releases it. Returns cb's value. */
int cmx_tr_emit(json_object *o, cmx_chunk_cb cb, void *ud);

#endif
