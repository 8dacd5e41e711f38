/* A stand-in for Windows' bcryptprimitives.dll, which wine 8 does not ship: Rust's standard
 * library (1.78 and later) imports ProcessPrng from it, so without it no Rust program loads.
 * Built with MinGW and placed beside the exe under test; never shipped with kanade. */
#include <windows.h>
#include <ntsecapi.h> /* RtlGenRandom (advapi32's SystemFunction036) */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
