/* utf8.h — strict UTF-8 checks for names read from files.
 *
 * Tensor names and pickle strings come from hostile files; a name with an
 * invalid byte sequence or a control character would print garbage, compare
 * wrongly or hide a NUL.  These checks follow RFC 3629: no overlong forms,
 * no surrogates (U+D800..DFFF), nothing above U+10FFFF.
 *
 *   if (!utf8_valid(s, n)) die("...not valid UTF-8");
 *   if (!utf8_name_ok(s, n)) die("...control character or invalid UTF-8");
 */
#ifndef REPAE_UTF8_H
#define REPAE_UTF8_H

#include <stddef.h>

/* 1 if s[0..n) is well-formed UTF-8 (NUL bytes allowed). */
int utf8_valid(const char *s, size_t n);
/* 1 if s[0..n) is well-formed UTF-8 with no C0 control (incl. NUL) and no DEL. */
int utf8_name_ok(const char *s, size_t n);

#endif
