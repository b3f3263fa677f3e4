/*
 * jsonfile: see jsonfile.h. jansson's error text is quoted in the errors
 * because these files are the operator's own configuration, not input from
 * the network.
 */
#include "jsonfile.h"

#include <stdlib.h>
#include <string.h>

#include "errstr.h"
#include "file.h"

json_t *jsonfile_read_array(const char *path, size_t max_bytes, char *errstr, size_t errstr_size)
{
	char *buf;
	size_t len = 0;
	json_t *root;
	json_error_t jerr;

	if ((buf = file_read(path, max_bytes, &len, errstr, errstr_size)) == NULL)
		return NULL;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	if (root == NULL) {
		errstr_set(errstr, errstr_size, "%s: line %d: %s", path, jerr.line, jerr.text);
		return NULL;
	}
	if (!json_is_array(root)) {
		errstr_set(errstr, errstr_size, "%s: not a JSON array", path);
		json_decref(root);
		return NULL;
	}
	return root;
}

char *jsonfile_resolve(const char *list_path, const char *entry_path)
{
	const char *slash = strrchr(list_path, '/');
	size_t dir_len, n;
	char *full;

	if (entry_path[0] == '/' || slash == NULL)
		return strdup(entry_path);
	/* A file at the root lists paths from "/". */
	dir_len = slash == list_path ? 1 : (size_t)(slash - list_path);
	n = dir_len + 1 + strlen(entry_path) + 1;
	full = malloc(n);
	if (full == NULL)
		return NULL;
	memcpy(full, list_path, dir_len);
	full[dir_len] = '/';
	memcpy(full + dir_len + 1, entry_path, n - dir_len - 1);
	return full;
}
