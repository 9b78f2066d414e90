/**
 * Permission bits of st_mode, as POSIX fixes them: for the modules that decide on a file's mode
 * without touching the file (node:fs stays in src/sys/files.ts).
 */
export const S_IRUSR = 0o400;
export const S_IXUSR = 0o100;
export const S_IRWXG = 0o070;
export const S_IWGRP = 0o020;
export const S_IXGRP = 0o010;
export const S_IRWXO = 0o007;
export const S_IWOTH = 0o002;
export const S_IXOTH = 0o001;
/** setuid, setgid and sticky. */
export const SPECIAL_MODE_BITS = 0o7000;
