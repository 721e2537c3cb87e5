/*
 * mp_reader.h — reading MessagePack one item at a time: the one MessagePack
 * reader of server and client.
 *
 * envelope.c's decoder (libparasync, and the server's publisher) and the
 * server's envelope_json.c both walk bytes with mp_next(): it reads the head
 * of one item (its kind, a scalar's value, the body of a str, bin or ext,
 * the count of an array or map) and checks every length against the bytes
 * that remain, so a walk never reads past the end.  Containers are not
 * entered: callers keep their own stack (bounded by depth in envelope.c,
 * on the heap in envelope_json.c) and check a container's count against the
 * bytes left (every element costs at least one byte).
 *
 * Everything here is static inline and free of PostgreSQL headers and of
 * allocation: no symbol is added to libparasync or para_sync.so.  Not an
 * installed header.
 */
#ifndef PSYNC_MP_READER_H
#define PSYNC_MP_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct mp_reader
{
	const uint8_t *p;			/* next byte to read */
	const uint8_t *end;
} mp_reader;

typedef enum mp_kind
{
	MP_NONE,					/* no byte left, or 0xc1 (mp_peek only) */
	MP_NIL,
	MP_BOOL,
	MP_UINT,					/* positive fixint, uint 8..64 */
	MP_INT,						/* negative fixint, int 8..64 */
	MP_FLOAT32,
	MP_FLOAT64,
	MP_STR,
	MP_BIN,
	MP_EXT,
	MP_ARRAY,
	MP_MAP
} mp_kind;

typedef struct mp_item
{
	mp_kind		kind;
	bool		boolean;		/* MP_BOOL */
	uint64_t	u;				/* MP_UINT */
	int64_t		i;				/* MP_INT */
	double		f;				/* MP_FLOAT32 (widened), MP_FLOAT64 */
	const uint8_t *data;		/* MP_STR, MP_BIN, MP_EXT: the body */
	uint64_t	len;			/* body bytes; MP_ARRAY elements; MP_MAP pairs */
	int8_t		ext_type;		/* MP_EXT; -1 is the timestamp extension */
} mp_item;

typedef enum mp_status
{
	MP_OK = 0,
	MP_INCOMPLETE,				/* the input ends inside an item's head */
	MP_PAST_END,				/* a str, bin or ext length runs past the end */
	MP_NOT_A_TYPE,				/* 0xc1 */
	MP_BAD_TIMESTAMP			/* a timestamp extension not 4, 8 or 12 bytes */
} mp_status;

static inline size_t
mp_left(const mp_reader *r)
{
	return (size_t) (r->end - r->p);
}

/* n bytes at p as a big-endian unsigned number. */
static inline uint64_t
mp_be(const uint8_t *p, int n)
{
	uint64_t	v = 0;

	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* The kind of an item whose first byte is b (MP_NONE for 0xc1). */
static inline mp_kind
mp_kind_of(uint8_t b)
{
	if (b <= 0x7f)
		return MP_UINT;
	if (b >= 0xe0)
		return MP_INT;
	if (b <= 0x8f)
		return MP_MAP;
	if (b <= 0x9f)
		return MP_ARRAY;
	if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb))
		return MP_STR;
	if (b >= 0xc4 && b <= 0xc6)
		return MP_BIN;
	if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))
		return MP_EXT;
	if (b >= 0xcc && b <= 0xcf)
		return MP_UINT;
	if (b >= 0xd0 && b <= 0xd3)
		return MP_INT;
	switch (b)
	{
		case 0xc0: return MP_NIL;
		case 0xc2: case 0xc3: return MP_BOOL;
		case 0xca: return MP_FLOAT32;
		case 0xcb: return MP_FLOAT64;
		case 0xdc: case 0xdd: return MP_ARRAY;
		case 0xde: case 0xdf: return MP_MAP;
		default: return MP_NONE;	/* 0xc1 */
	}
}

/* The kind of the next item, from its first byte alone (nothing is read). */
static inline mp_kind
mp_peek(const mp_reader *r)
{
	return r->p < r->end ? mp_kind_of(*r->p) : MP_NONE;
}

/* The next n bytes as a big-endian unsigned number (a length, count or value). */
static inline mp_status
mp_take(mp_reader *r, int n, uint64_t *v)
{
	if (mp_left(r) < (size_t) n)
		return MP_INCOMPLETE;
	*v = mp_be(r->p, n);
	r->p += n;
	return MP_OK;
}

/* A body of n bytes (str, bin). */
static inline mp_status
mp_body(mp_reader *r, mp_item *it, uint64_t n)
{
	if (mp_left(r) < n)
		return MP_PAST_END;
	it->data = r->p;
	it->len = n;
	r->p += n;
	return MP_OK;
}

/* An extension: its type byte, then n data bytes. */
static inline mp_status
mp_ext(mp_reader *r, mp_item *it, uint64_t n)
{
	if (mp_left(r) < 1 + n)
		return MP_PAST_END;
	it->ext_type = (int8_t) r->p[0];
	it->data = r->p + 1;
	it->len = n;
	r->p += 1 + n;
	if (it->ext_type == -1 && n != 4 && n != 8 && n != 12)
		return MP_BAD_TIMESTAMP;
	return MP_OK;
}

/* The 0xc0..0xdf heads: everything but the fix* forms. */
static inline mp_status
mp_next_typed(mp_reader *r, uint8_t b, mp_item *it)
{
	uint64_t	v;
	mp_status	st;

	it->kind = mp_kind_of(b);
	switch (b)
	{
		case 0xc0:
			return MP_OK;
		case 0xc2: case 0xc3:
			it->boolean = b == 0xc3;
			return MP_OK;
		case 0xc4: case 0xc5: case 0xc6:
			st = mp_take(r, 1 << (b - 0xc4), &v);
			return st ? st : mp_body(r, it, v);
		case 0xd9: case 0xda: case 0xdb:
			st = mp_take(r, 1 << (b - 0xd9), &v);
			return st ? st : mp_body(r, it, v);
		case 0xc7: case 0xc8: case 0xc9:
			st = mp_take(r, 1 << (b - 0xc7), &v);
			return st ? st : mp_ext(r, it, v);
		case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
			return mp_ext(r, it, (uint64_t) 1 << (b - 0xd4));
		case 0xca:
			{
				uint32_t	v32;
				float		f;

				if ((st = mp_take(r, 4, &v)) != MP_OK)
					return st;
				v32 = (uint32_t) v;
				memcpy(&f, &v32, 4);
				it->f = f;
				return MP_OK;
			}
		case 0xcb:
			if ((st = mp_take(r, 8, &v)) != MP_OK)
				return st;
			memcpy(&it->f, &v, 8);
			return MP_OK;
		case 0xcc: case 0xcd: case 0xce: case 0xcf:
			return mp_take(r, 1 << (b - 0xcc), &it->u);
		case 0xd0: case 0xd1: case 0xd2: case 0xd3:
			{
				int			n = 1 << (b - 0xd0);

				if ((st = mp_take(r, n, &v)) != MP_OK)
					return st;
				it->i = n == 8 ? (int64_t) v : (int64_t) (v << (64 - 8 * n)) >> (64 - 8 * n);
				return MP_OK;
			}
		case 0xdc: case 0xde:
			return mp_take(r, 2, &it->len);
		case 0xdd: case 0xdf:
			return mp_take(r, 4, &it->len);
		default:
			return MP_NOT_A_TYPE;	/* 0xc1 */
	}
}

/*
 * Read the next item's head into *it (and the body of a str, bin or ext);
 * the reader then stands after it, or, for an array or map, at its first
 * element.  On an error *it and the position are unspecified.
 */
static inline mp_status
mp_next(mp_reader *r, mp_item *it)
{
	uint8_t		b;

	if (r->p >= r->end)
		return MP_INCOMPLETE;
	b = *r->p++;
	if (b <= 0x7f)
	{
		it->kind = MP_UINT;
		it->u = b;
		return MP_OK;
	}
	if (b >= 0xe0)
	{
		it->kind = MP_INT;
		it->i = (int8_t) b;
		return MP_OK;
	}
	if (b <= 0xbf)
	{
		it->kind = b <= 0x8f ? MP_MAP : b <= 0x9f ? MP_ARRAY : MP_STR;
		if (it->kind == MP_STR)
			return mp_body(r, it, b & 0x1f);
		it->len = b & 0x0f;
		return MP_OK;
	}
	return mp_next_typed(r, b, it);
}

#endif							/* PSYNC_MP_READER_H */
