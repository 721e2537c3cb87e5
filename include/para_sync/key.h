/*
 * para_sync/key.h — object keys (docs/protocol.md), shared by server and client.
 *
 * A key is "<sync name>:<pk1>[:<pk2>...]" where each primary-key part is the
 * column's text output with every byte outside [A-Za-z0-9_-] written as %XX
 * (upper-case hex).  A key is therefore always a single NATS subject token.
 * A part may be empty (the text ''): "mail:" and "t::" are keys.  The exact
 * grammar is in docs/protocol.md; psync_key_is_valid() implements it.
 */
#ifndef PARA_SYNC_KEY_H
#define PARA_SYNC_KEY_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* True for the bytes a key part may carry unescaped: [A-Za-z0-9_-]. */
bool		psync_key_byte_is_plain(unsigned char c);

/* Largest escaped size of len input bytes. */
#define PSYNC_KEY_ESCAPED_MAX(len) ((len) * 3)

/*
 * Escape len bytes of in into out (room for PSYNC_KEY_ESCAPED_MAX(len)).
 * Returns the number of bytes written; out is not NUL-terminated.
 */
size_t		psync_key_escape(const char *in, size_t len, char *out);

/*
 * Undo psync_key_escape on one key part.  out needs len bytes.  Returns the
 * decoded length, or -1 when in holds a byte that escaping would never
 * produce, a malformed %XX, or %00.
 */
long		psync_key_unescape(const char *in, size_t len, char *out);

/* True when name is a valid sync name: 1..63 bytes of [A-Za-z0-9_-]. */
bool		psync_sync_name_is_valid(const char *name, size_t len);

/*
 * True when key[0..len) is a key of the grammar in docs/protocol.md: a valid
 * sync name, then one or more ":"-prefixed parts, each empty or made of
 * [A-Za-z0-9_-] and canonical %XX (upper-case, never a plain byte, never
 * 00); at most PSYNC_MAX_KEY_LEN bytes.  The server produces only these keys
 * and snapshot() accepts only these; libparasync accepts exactly these.
 */
bool		psync_key_is_valid(const char *key, size_t len);

/*
 * True when key (assumed valid) belongs to the sync name name[0..name_len):
 * it starts "<name>:".  "t:" is in table t (its one part is empty).
 */
bool		psync_key_in_table(const char *key, size_t len, const char *sync_name,
							   size_t name_len);

/* Longest scope token (bytes, after escaping). */
#define PSYNC_MAX_SCOPE_LEN 256

/*
 * True when scope[0..len) is a scope token (docs/protocol.md, "Scopes"):
 * 1 to PSYNC_MAX_SCOPE_LEN bytes, either "%" alone (one empty text) or
 * ":"-separated parts, each "%00" (SQL NULL) or a key part (empty, or
 * [A-Za-z0-9_-] and canonical %XX).  Always one NATS subject token.
 */
bool		psync_scope_is_valid(const char *scope, size_t len);

#ifdef __cplusplus
}
#endif

#endif							/* PARA_SYNC_KEY_H */
