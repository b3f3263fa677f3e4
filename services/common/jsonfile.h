/*
 * jsonfile: the configuration files that list entries as a JSON array (the
 * trusted keys file, the issuers file), read the same way: bounded,
 * duplicate members refused, and the paths inside an entry taken from the
 * listing file's folder when they are relative.
 */
#ifndef KMS_JSONFILE_H
#define KMS_JSONFILE_H

#include <stddef.h>

#include <jansson.h>

/* Read path, at most max_bytes, as a JSON array. Returns the array (caller
 * frees with json_decref()), or NULL with errstr filled ("PATH: line N:
 * why", "PATH: not a JSON array", or file_read()'s sentence). */
json_t *jsonfile_read_array(const char *path, size_t max_bytes, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

/* The file that entry_path names, an entry of the listing file list_path:
 * entry_path as it is when absolute or when list_path has no folder, else
 * joined to list_path's folder. Returns a malloc'd string the caller frees,
 * or NULL when out of memory. */
char *jsonfile_resolve(const char *list_path, const char *entry_path)
    __attribute__((warn_unused_result));

#endif
