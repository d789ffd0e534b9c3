/* Virtual keys: what a client presents instead of a provider key. A key is "cmx-" followed
 * by the base62 form of 32 random bytes; it is shown once at creation, and only its SHA-256
 * (hex) is stored. Lookups go by hash, and the final comparison is constant-time. */
#ifndef CMX_KEYS_KEYS_H
#define CMX_KEYS_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define CMX_KEY_PREFIX   "cmx-"
#define CMX_KEY_RANDOM   32                   /* random bytes in a key */
#define CMX_KEY_DIGITS   43                   /* ceil(256 / log2(62)) base62 digits */
#define CMX_KEY_TEXT_MAX (4 + CMX_KEY_DIGITS) /* "cmx-" + the digits */
#define CMX_KEY_HASH_HEX 64                   /* SHA-256 as lowercase hex */
#define CMX_KEY_ID_LEN   (4 + 16)             /* "key_" + 16 hex digits */

/* Creates a new key from the system's CSPRNG (OpenSSL RAND_bytes) into text (NUL-
 * terminated, at most CMX_KEY_TEXT_MAX characters; the base62 digits are zero-padded to a
 * fixed width so every key has the same length), its hash into hash_hex (65 bytes) and a
 * public id ("key_" + 16 random hex digits) into id (CMX_KEY_ID_LEN + 1 bytes). 0 or
 * CMX_EIO when the CSPRNG fails. */
int cmx_key_generate(char text[CMX_KEY_TEXT_MAX + 1], char hash_hex[CMX_KEY_HASH_HEX + 1],
                     char id[CMX_KEY_ID_LEN + 1]);

/* Encodes n bytes as a fixed-width base62 number (digits 0-9A-Za-z, most significant
 * first) of width characters into out (no NUL). width must be at least the digits the
 * value needs (ceil(n * 8 / log2 62)); leading digits are '0'. */
void cmx_base62_encode(const unsigned char *bytes, size_t n, char *out, size_t width);

/* The SHA-256 of key[0..len) as lowercase hex into hash_hex (65 bytes, NUL-terminated). */
void cmx_key_hash(const char *key, size_t len, char hash_hex[CMX_KEY_HASH_HEX + 1]);

/* True when a and b (each len bytes) are equal, in time independent of their contents. */
bool cmx_key_equal(const char *a, const char *b, size_t len);

/* The key a request presents: "Authorization: Bearer <key>" (scheme case-insensitive) or,
 * for Azure-style clients, "api-key: <key>". authorization / api_key are the header values
 * (NULL when absent). Returns the key span in *key / *len, or false when neither carries
 * one (an empty or malformed value carries none). */
bool cmx_key_from_headers(const char *authorization, size_t auth_len, const char *api_key,
                          size_t api_key_len, const char **key, size_t *len);

/* True when s[0..len) has the shape of a virtual key ("cmx-" + base62 digits of the
 * right length), so other tokens can be refused without a lookup. */
bool cmx_key_well_formed(const char *s, size_t len);

#endif
