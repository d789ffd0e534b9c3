#include <stdio.h>
int main(void)
{
    puts("cloudmux " CMX_VERSION);
    return 0;
}
