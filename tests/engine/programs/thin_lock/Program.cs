// Holds uncontended monitors, which stay thin locks in object headers (no
// sync block): a named thread inside lock(list), and the main thread inside
// Console.ReadLine (which locks the console reader). Prints READY, then
// waits for stdin to close.
var ready = new ManualResetEventSlim();
var holder = new Thread(() =>
{
    var gate = new List<int> { 1, 2, 3 };
    lock (gate)
    {
        ready.Set();
        Thread.Sleep(Timeout.Infinite);
    }
})
{ Name = "ThinHolder", IsBackground = true };
holder.Start();
ready.Wait();
Console.WriteLine("READY");
Console.Out.Flush();
Console.ReadLine();
