// geosyncctl: the DBA CLI.
int main() { return 0; }
