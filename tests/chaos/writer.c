/* A traced writer whose writes are counted exactly, for the loss test in tests/chaos.rs:
 * `writer FILE SIZE COUNT` opens FILE, prints "ready", waits for a line on stdin, makes
 * COUNT pwrite()s of SIZE bytes at offset 0 (the file stays SIZE bytes long), prints how
 * many of them wrote all SIZE bytes, and exits at the next line (or EOF) on stdin, so
 * that its end is no event of the recording. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: writer FILE SIZE COUNT\n");
		return 2;
	}
	size_t size = strtoul(argv[2], NULL, 10);
	unsigned long count = strtoul(argv[3], NULL, 10);
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char *buf = malloc(size);
	if (fd < 0 || !buf) {
		perror("writer");
		return 1;
	}
	memset(buf, 'w', size);
	char line[16];
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	unsigned long whole = 0;
	for (unsigned long i = 0; i < count; i++)
		if (pwrite(fd, buf, size, 0) == (ssize_t)size)
			whole++;
	printf("%lu\n", whole);
	fflush(stdout);
	fgets(line, sizeof(line), stdin);
	return 0;
}
