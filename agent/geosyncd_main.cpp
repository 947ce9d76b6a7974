// geosyncd: the per-site daemon.
int main() { return 0; }
