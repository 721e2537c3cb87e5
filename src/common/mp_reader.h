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
 * bytes left (every element costs at least one byte).  mp_skip() steps over
 * an item without reading its value, for envelope.c's validating walk (the
 * hot path of every decode); what is not a fix* form, nil, bool or number
 * it reads through mp_next() too.
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

/* Kinds of the 0xc0..0xdf heads. */
static const uint8_t mp_kind_c0[32] = {
	MP_NIL, MP_NONE, MP_BOOL, MP_BOOL,	/* c0: nil, (never used), false, true */
	MP_BIN, MP_BIN, MP_BIN,		/* c4 */
	MP_EXT, MP_EXT, MP_EXT,		/* c7 */
	MP_FLOAT32, MP_FLOAT64,		/* ca */
	MP_UINT, MP_UINT, MP_UINT, MP_UINT,	/* cc */
	MP_INT, MP_INT, MP_INT, MP_INT,	/* d0 */
	MP_EXT, MP_EXT, MP_EXT, MP_EXT, MP_EXT,	/* d4: fixext */
	MP_STR, MP_STR, MP_STR,		/* d9 */
	MP_ARRAY, MP_ARRAY, MP_MAP, MP_MAP	/* dc */
};

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
	if (b <= 0xbf)
		return MP_STR;
	return (mp_kind) mp_kind_c0[b - 0xc0];
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

	switch (b)
	{
		case 0xc0:
			it->kind = MP_NIL;
			return MP_OK;
		case 0xc2: case 0xc3:
			it->kind = MP_BOOL;
			it->boolean = b == 0xc3;
			return MP_OK;
		case 0xc4: case 0xc5: case 0xc6:
			it->kind = MP_BIN;
			st = mp_take(r, 1 << (b - 0xc4), &v);
			return st ? st : mp_body(r, it, v);
		case 0xd9: case 0xda: case 0xdb:
			it->kind = MP_STR;
			st = mp_take(r, 1 << (b - 0xd9), &v);
			return st ? st : mp_body(r, it, v);
		case 0xc7: case 0xc8: case 0xc9:
			it->kind = MP_EXT;
			st = mp_take(r, 1 << (b - 0xc7), &v);
			return st ? st : mp_ext(r, it, v);
		case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
			it->kind = MP_EXT;
			return mp_ext(r, it, (uint64_t) 1 << (b - 0xd4));
		case 0xca:
			{
				uint32_t	v32;
				float		f;

				it->kind = MP_FLOAT32;
				if ((st = mp_take(r, 4, &v)) != MP_OK)
					return st;
				v32 = (uint32_t) v;
				memcpy(&f, &v32, 4);
				it->f = f;
				return MP_OK;
			}
		case 0xcb:
			it->kind = MP_FLOAT64;
			if ((st = mp_take(r, 8, &v)) != MP_OK)
				return st;
			memcpy(&it->f, &v, 8);
			return MP_OK;
		case 0xcc: case 0xcd: case 0xce: case 0xcf:
			it->kind = MP_UINT;
			return mp_take(r, 1 << (b - 0xcc), &it->u);
		case 0xd0: case 0xd1: case 0xd2: case 0xd3:
			{
				int			n = 1 << (b - 0xd0);

				it->kind = MP_INT;
				if ((st = mp_take(r, n, &v)) != MP_OK)
					return st;
				it->i = n == 8 ? (int64_t) v : (int64_t) (v << (64 - 8 * n)) >> (64 - 8 * n);
				return MP_OK;
			}
		case 0xdc: case 0xdd:
			it->kind = MP_ARRAY;
			return mp_take(r, b == 0xdc ? 2 : 4, &it->len);
		case 0xde: case 0xdf:
			it->kind = MP_MAP;
			return mp_take(r, b == 0xde ? 2 : 4, &it->len);
		default:
			it->kind = MP_NONE;
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
	if (b >= 0xa0 && b <= 0xbf)
	{
		it->kind = MP_STR;
		return mp_body(r, it, b & 0x1f);
	}
	if (b <= 0x9f)
	{
		it->kind = b <= 0x8f ? MP_MAP : MP_ARRAY;
		it->len = b & 0x0f;
		return MP_OK;
	}
	return mp_next_typed(r, b, it);
}

/* Body sizes of the 0xc0..0xdf heads that have a fixed one (-1: others). */
static const int8_t mp_fixed_size[32] = {
	0, -1, 0, 0,				/* c0: nil, (never used), false, true */
	-1, -1, -1, -1, -1, -1,		/* c4: bin, ext */
	4, 8,						/* ca: float 32, 64 */
	1, 2, 4, 8,					/* cc: uint */
	1, 2, 4, 8,					/* d0: int */
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1	/* d4: fixext, str, array, map */
};

/*
 * Step over the next item's head and body without reading its value, for a
 * walk that only validates: the fix* forms, nil, bool and numbers directly,
 * the rest through mp_next.  An array or map is not entered: *container is
 * then true and *items how many items it holds (a map's keys and values).
 */
static inline mp_status
mp_skip(mp_reader *r, bool *container, uint64_t *items)
{
	uint8_t		b;
	mp_item		it;
	mp_status	st;

	*container = false;
	*items = 0;
	if (r->p >= r->end)
		return MP_INCOMPLETE;
	b = *r->p++;
	if (b <= 0x7f || b >= 0xe0)
		return MP_OK;			/* fixint */
	if ((b & 0xe0) == 0xa0)
	{							/* fixstr: the most common item of a row */
		if (mp_left(r) < (size_t) (b & 0x1f))
			return MP_PAST_END;
		r->p += b & 0x1f;
		return MP_OK;
	}
	if (b <= 0x9f)
	{
		*container = true;
		*items = b <= 0x8f ? (uint64_t) (b & 0x0f) * 2 : b & 0x0f;
		return MP_OK;
	}
	if (mp_fixed_size[b - 0xc0] >= 0)
	{
		if (mp_left(r) < (size_t) mp_fixed_size[b - 0xc0])
			return MP_INCOMPLETE;
		r->p += mp_fixed_size[b - 0xc0];
		return MP_OK;
	}
	if ((st = mp_next_typed(r, b, &it)) != MP_OK)
		return st;
	*container = it.kind == MP_ARRAY || it.kind == MP_MAP;
	if (*container)
		*items = it.kind == MP_MAP ? it.len * 2 : it.len;
	return MP_OK;
}

#endif							/* PSYNC_MP_READER_H */
