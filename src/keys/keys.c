/* Virtual key generation, hashing and presentation (see keys.h). */
#include "keys/keys.h"
#include "core/fmt.h"
#include "core/err.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <string.h>
#include <strings.h>

static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#define KEY_DIGITS CMX_KEY_DIGITS

void cmx_base62_encode(const unsigned char *bytes, size_t n, char *out, size_t width)
{
    unsigned char num[64];
    size_t len = n < sizeof(num) ? n : sizeof(num);

    memcpy(num, bytes, len);
    for (size_t w = width; w > 0; w--) {
        /* num /= 62, remainder is the next least significant digit */
        unsigned rem = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned cur = rem * 256 + num[i];
            num[i] = (unsigned char)(cur / 62);
            rem = cur % 62;
        }
        out[w - 1] = B62[rem];
    }
    OPENSSL_cleanse(num, sizeof(num));
}

void cmx_key_hash(const char *key, size_t len, char hash_hex[CMX_KEY_HASH_HEX + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)key, len, md);
    cmx_hex_encode(md, sizeof(md), hash_hex);
}

int cmx_key_generate(char text[CMX_KEY_TEXT_MAX + 1], char hash_hex[CMX_KEY_HASH_HEX + 1],
                     char id[CMX_KEY_ID_LEN + 1])
{
    unsigned char r[CMX_KEY_RANDOM], idr[8];

    if (RAND_bytes(r, sizeof(r)) != 1 || RAND_bytes(idr, sizeof(idr)) != 1)
        return CMX_EIO;
    memcpy(text, CMX_KEY_PREFIX, 4);
    cmx_base62_encode(r, sizeof(r), text + 4, KEY_DIGITS);
    text[4 + KEY_DIGITS] = '\0';
    OPENSSL_cleanse(r, sizeof(r));
    cmx_key_hash(text, 4 + KEY_DIGITS, hash_hex);
    memcpy(id, "key_", 4);
    cmx_hex_encode(idr, sizeof(idr), id + 4);
    return 0;
}

bool cmx_key_equal(const char *a, const char *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

bool cmx_key_from_headers(const char *authorization, size_t auth_len, const char *api_key,
                          size_t api_key_len, const char **key, size_t *len)
{
    if (authorization != NULL) {
        const char *s = authorization;
        size_t n = auth_len;
        trim(&s, &n);
        if (n > 7 && strncasecmp(s, "Bearer ", 7) == 0) {
            s += 7;
            n -= 7;
            trim(&s, &n);
            if (n > 0 && memchr(s, ' ', n) == NULL) {
                *key = s;
                *len = n;
                return true;
            }
        }
    }
    if (api_key != NULL) {
        const char *s = api_key;
        size_t n = api_key_len;
        trim(&s, &n);
        if (n > 0 && memchr(s, ' ', n) == NULL) {
            *key = s;
            *len = n;
            return true;
        }
    }
    return false;
}

bool cmx_key_well_formed(const char *s, size_t len)
{
    if (len != 4 + KEY_DIGITS || memcmp(s, CMX_KEY_PREFIX, 4) != 0)
        return false;
    for (size_t i = 4; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
            return false;
    }
    return true;
}
