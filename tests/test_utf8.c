/* utf8_valid and utf8_name_ok against the definition (RFC 3629): a valid
 * string is a concatenation of encodings of Unicode scalar values (0 to
 * 0x10FFFF, surrogates excluded), each in its shortest form.  The oracle
 * builds the set of encodings from the code points with an encoder of its
 * own and splits a string into them; it never decodes.  Every string of one,
 * two and three bytes is checked, every encoding of four bytes, and four-byte
 * strings around each boundary. */
#include "core/utf8.h"
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

/* The encoding of cp (shortest form), its length returned. */
static int encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xc0 | cp >> 6), out[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cp >> 12), out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cp >> 18), out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f)), out[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static int scalar_value(uint32_t cp) { return cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff); }

/* The sets of encodings of lengths 1 to 3 as bitmaps over the byte strings
 * read big-endian; length 4 as a sorted array. */
static uint8_t *enc_bits[4];
static uint32_t *enc4;
static size_t n_enc4;

static int is_encoding(const uint8_t *s, int len)
{
    uint32_t key = 0;
    for (int k = 0; k < len; k++)
        key = key << 8 | s[k];
    if (len < 4)
        return enc_bits[len][key >> 3] >> (key & 7) & 1;
    size_t lo = 0, hi = n_enc4;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (enc4[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n_enc4 && enc4[lo] == key;
}

/* Whether s splits into encodings (trying every length). */
static int oracle_valid(const uint8_t *s, size_t n)
{
    if (n == 0)
        return 1;
    for (int len = 1; len <= 4 && (size_t)len <= n; len++)
        if (is_encoding(s, len) && oracle_valid(s + len, n - (size_t)len))
            return 1;
    return 0;
}

static void build_sets(void)
{
    for (int len = 1; len < 4; len++)
        enc_bits[len] = calloc((size_t)1 << (8 * len - 3), 1);
    enc4 = malloc(0x110000 * sizeof *enc4);
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        if (!scalar_value(cp))
            continue;
        uint8_t e[4];
        int len = encode(cp, e);
        uint32_t key = 0;
        for (int k = 0; k < len; k++)
            key = key << 8 | e[k];
        if (len < 4)
            enc_bits[len][key >> 3] |= (uint8_t)(1u << (key & 7));
        else
            enc4[n_enc4++] = key; /* increasing with cp */
    }
}

static void test_every_short_string(void)
{
    long wrong = 0, valid = 0;
    uint8_t s[3];
    for (uint32_t v = 0; v < (1u << 24); v++) {
        s[0] = (uint8_t)(v >> 16), s[1] = (uint8_t)(v >> 8), s[2] = (uint8_t)v;
        /* the whole three bytes, and (while v < 2^16) its last two and last one */
        for (int n = 3; n >= 1; n--) {
            if (n < 3 && v >= (1u << (8 * n)))
                break;
            const uint8_t *p = s + 3 - n;
            int got = utf8_valid((const char *)p, (size_t)n), want = oracle_valid(p, (size_t)n);
            valid += want;
            if (got != want && wrong++ < 5)
                CHECK(0, "%d bytes %02x %02x %02x: utf8_valid %d, definition %d", n, s[0], s[1], s[2], got, want);
        }
    }
    CHECK(wrong == 0, "%ld strings of 1-3 bytes judged wrongly", wrong);
    CHECK(valid == 128 + 128 * 128 + 1920 + 128 * 128 * 128 + 2 * 128 * 1920 + 61440,
          "%ld valid strings of 1-3 bytes", valid); /* ASCII runs, 2-byte and 3-byte scalars, and their mixes */
    CHECK(utf8_valid("", 0) == 1, "the empty string is valid");
}

static void test_four_bytes(void)
{
    long wrong = 0, tried = 0;
    /* every four-byte encoding alone, after ASCII, and cut short */
    for (size_t i = 0; i < n_enc4; i++) {
        uint8_t s[5] = {'a', (uint8_t)(enc4[i] >> 24), (uint8_t)(enc4[i] >> 16), (uint8_t)(enc4[i] >> 8),
                        (uint8_t)enc4[i]};
        wrong += utf8_valid((const char *)s + 1, 4) != 1;
        wrong += utf8_valid((const char *)s, 5) != 1;
        wrong += utf8_valid((const char *)s + 1, 3) != 0;
        wrong += utf8_valid((const char *)s, 4) != 0; /* cut short after ASCII: the lead is not at 0 */
        tried += 4;
    }
    /* every four-byte string whose first byte is 0xf0-0xf5 and whose other
     * bytes are each at an edge of a range (0x7f, 0x80, 0x8f, 0x90, 0x9f,
     * 0xa0, 0xbf, 0xc0), plus any lead byte with continuation bytes */
    const uint8_t edges[] = {0x00, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    const int ne = sizeof edges / sizeof edges[0];
    for (int lead = 0; lead < 256; lead++)
        for (int a = 0; a < ne; a++)
            for (int b = 0; b < ne; b++)
                for (int c = 0; c < ne; c++) {
                    uint8_t s[4] = {(uint8_t)lead, edges[a], edges[b], edges[c]};
                    wrong += utf8_valid((const char *)s, 4) != oracle_valid(s, 4);
                    tried++;
                }
    CHECK(wrong == 0, "%ld of %ld four-byte cases judged wrongly", wrong, tried);
}

/* Names: valid UTF-8 without C0 controls or DEL (C1 controls, being
 * two-byte encodings, are allowed). */
static void test_names(void)
{
    CHECK(utf8_name_ok("layer.0.weight", 14) && utf8_name_ok("\xc3\xa9t\xc3\xa9", 5) && utf8_name_ok("", 0),
          "plain names refused");
    CHECK(utf8_name_ok(" ~", 2) && utf8_name_ok("\xc2\x85", 2), "space, tilde or a C1 control refused");
    for (int c = 0; c < 0x20; c++) {
        char s[3] = {'a', (char)c, 'b'};
        CHECK(!utf8_name_ok(s, 3), "control 0x%02x accepted", c);
    }
    CHECK(!utf8_name_ok("a\x7f", 2), "DEL accepted");
    CHECK(!utf8_name_ok("\x7f", 1) && !utf8_name_ok("\x01", 1), "a control alone accepted");
    CHECK(!utf8_name_ok("ab\xff", 3) && !utf8_name_ok("\xed\xa0\x80", 3), "invalid UTF-8 accepted as a name");
}

int main(void)
{
    build_sets();
    RUN(test_every_short_string);
    RUN(test_four_bytes);
    RUN(test_names);
    for (int len = 1; len < 4; len++)
        free(enc_bits[len]);
    free(enc4);
    return test_summary();
}
