/*
 * keymap.c — chained hash map from byte-string keys to pointers.
 *
 * FNV-1a hashing, power-of-two buckets, doubling at load factor 1.  Small on
 * purpose: the transports need lookup by key on every delivery, nothing
 * more.
 */
#include "keymap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct keymap_node
{
	keymap_node *next;
	uint64_t	hash;
	void	   *value;
	size_t		len;
	char		key[];
};

static uint64_t
hash_bytes(const char *key, size_t len)
{
	uint64_t	h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++)
	{
		h ^= (unsigned char) key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

bool
keymap_init(keymap *map)
{
	map->nbuckets = 16;
	map->count = 0;
	map->buckets = calloc(map->nbuckets, sizeof(*map->buckets));
	return map->buckets != NULL;
}

void
keymap_free(keymap *map)
{
	for (size_t i = 0; i < map->nbuckets; i++)
	{
		keymap_node *n = map->buckets[i];

		while (n != NULL)
		{
			keymap_node *next = n->next;

			free(n);
			n = next;
		}
	}
	free(map->buckets);
	map->buckets = NULL;
	map->count = 0;
}

static keymap_node **
find_slot(const keymap *map, const char *key, size_t len, uint64_t hash)
{
	keymap_node **slot = &map->buckets[hash & (map->nbuckets - 1)];

	while (*slot != NULL &&
		   !((*slot)->hash == hash && (*slot)->len == len &&
			 memcmp((*slot)->key, key, len) == 0))
		slot = &(*slot)->next;
	return slot;
}

void *
keymap_get(const keymap *map, const char *key, size_t len)
{
	keymap_node *n = *find_slot(map, key, len, hash_bytes(key, len));

	return n != NULL ? n->value : NULL;
}

static void
grow(keymap *map)
{
	size_t		nbuckets = map->nbuckets * 2;
	keymap_node **buckets = calloc(nbuckets, sizeof(*buckets));

	if (buckets == NULL)
		return;					/* keep working with longer chains */
	for (size_t i = 0; i < map->nbuckets; i++)
	{
		keymap_node *n = map->buckets[i];

		while (n != NULL)
		{
			keymap_node *next = n->next;
			keymap_node **b = &buckets[n->hash & (nbuckets - 1)];

			n->next = *b;
			*b = n;
			n = next;
		}
	}
	free(map->buckets);
	map->buckets = buckets;
	map->nbuckets = nbuckets;
}

bool
keymap_put(keymap *map, const char *key, size_t len, void *value)
{
	uint64_t	hash = hash_bytes(key, len);
	keymap_node *n = malloc(sizeof(*n) + len + 1);
	keymap_node **b;

	if (n == NULL)
		return false;
	n->hash = hash;
	n->value = value;
	n->len = len;
	memcpy(n->key, key, len);
	n->key[len] = '\0';
	b = &map->buckets[hash & (map->nbuckets - 1)];
	n->next = *b;
	*b = n;
	if (++map->count > map->nbuckets)
		grow(map);
	return true;
}

void *
keymap_remove(keymap *map, const char *key, size_t len)
{
	keymap_node **slot = find_slot(map, key, len, hash_bytes(key, len));
	keymap_node *n = *slot;
	void	   *value;

	if (n == NULL)
		return NULL;
	*slot = n->next;
	value = n->value;
	free(n);
	map->count--;
	return value;
}

void
keymap_each(const keymap *map, void (*fn) (void *ctx, void *value), void *ctx)
{
	for (size_t i = 0; i < map->nbuckets; i++)
		for (keymap_node *n = map->buckets[i]; n != NULL; n = n->next)
			fn(ctx, n->value);
}
