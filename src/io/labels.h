/* labels.h — class labels given on the command line: "3,1,4" or a text file
 * of non-negative integers separated by white space or commas.
 *
 *   int n;
 *   int *y = labels_parse("labels.txt", "sample --labels", &n);
 *
 * A file must be a regular text file (no NUL byte); an entry that is not a
 * non-negative integer below 2^30, or no entry at all, dies naming `flag`
 * and the argument. */
#ifndef REPAE_LABELS_H
#define REPAE_LABELS_H

int *labels_parse(const char *arg, const char *flag, int *count);

#endif
