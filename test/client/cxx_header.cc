// cxx_header.cc — the public headers compile as C++ (a C++ service or a
// language binding includes them as they are) and the API is callable.
#include <para_sync/client.h>

#include <cstdio>

int
main()
{
	psync_transport *t = nullptr;

	if (psync_inprocess_transport_new(&t) != PSYNC_OK)
		return 1;
	psync_replica_options o;
	psync_replica_options_init(&o);
	o.key = "users:1";
	psync_schema_raw(&o.schema);
	o.transport = t;
	psync_replica *r = nullptr;
	psync_status st = psync_replica_new(&o, &r);
	std::printf("%s\n", psync_status_text(st));
	psync_replica_destroy(r);
	psync_transport_destroy(t);
	return st == PSYNC_OK ? 0 : 1;
}
